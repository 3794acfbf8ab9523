import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOWebSocket

@testable import BrokerServer

/// One broker on one EmbeddedEventLoop, with as many WebSocket connections and HTTP connections
/// (on EmbeddedChannels) as a test opens: the operator routes see the connections the loop holds.
/// The journal answers as tasks of the loop, so after `loop.run()` every answer owed is written.
final class AdminHarness {
    let loop = EmbeddedEventLoop()
    let broker: Broker
    let admission: Admission
    static let jwtSecret = "an-hs256-secret-of-at-least-32-bytes!"

    init(configure: (inout BrokerConfiguration) -> Void = { _ in }) async throws {
        var configuration = BrokerConfiguration()
        configure(&configuration)
        broker = Broker(
            configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
            logger: Logger(label: "test"))
        admission = Admission(authenticator: try await Authenticator.make(configuration), configuration: configuration)
    }

    /// A WebSocket connection from `address:port` (its welcome already read).
    func connect(
        from address: String = "127.0.0.1", port: Int = 50412, identity: Identity = .open
    ) throws -> (channel: EmbeddedChannel, connection: WebSocketConnection) {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: address, port: port)).wait()
        let connection = WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker, identity: identity)
        try channel.pipeline.syncOperations.addHandler(connection)
        loop.run()
        _ = try channel.readServerFrames()
        return (channel, connection)
    }

    /// An HTTP connection to a listener of `role`.
    func http(role: ListenerRole = .combined) throws -> HTTPConnection {
        let hooks = ServerHooks(isListening: { true }, renderMetrics: { Array("m 1\n".utf8) }, admission: admission)
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(
            HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: ["/ws"], role: role))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return HTTPConnection(channel: channel, loop: loop)
    }

    /// Signs a token with `jwtSecret` (configure `$0.jwtSecret = AdminHarness.jwtSecret`).
    static func token(_ claims: TokenClaims) async throws -> String {
        try await Authenticator.sign(claims, secret: jwtSecret, privateKeyPath: nil)
    }

    struct Response {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: String
    }

    struct HTTPConnection {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop

        /// Sends a request without a body and returns the answer (nil: none once the loop ran).
        func request(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)] = []) throws -> Response? {
            var all = headers
            if !all.contains(where: { $0.0 == "Host" }) { all.append(("Host", "localhost")) }
            try channel.writeInbound(HTTPServerRequestPart.head(
                HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(all))))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            loop.run()
            guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
            var body = ""
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                if case .body(.byteBuffer(let buffer)) = part { body += String(buffer: buffer) }
                if case .end = part { break }
            }
            return Response(status: head.status, headers: head.headers, body: body)
        }
    }
}
