import BrokerJournal
import BrokerTestSupport
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BrokerServer

/// The HTTP handler on an EmbeddedChannel: request parts in, response parts out, no sockets.
@Suite struct HTTPRequestHandlerTests {
    struct Harness {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop

        init(configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
            loop = EmbeddedEventLoop()
            var configuration = BrokerConfiguration()
            configure(&configuration)
            let broker = Broker(
                configuration: configuration, journal: SynchronousJournal(epoch: "e1"), eventLoops: [loop], logger: Logger(label: "test"))
            let hooks = ServerHooks(isListening: { true }, renderMetrics: { Array("m 1\n".utf8) }, isAuthorizedUpgrade: { _ in true })
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: ["/ws"]))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func head(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)] = []) throws {
            try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))))
        }

        func body(_ text: String) throws { try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: text))) }
        func end() throws { try channel.writeInbound(HTTPServerRequestPart.end(nil)) }

        /// The next response: status, headers and body; nil when none is waiting once the loop
        /// has run everything it can (the journal completes at once, on this thread).
        func response() throws -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String)? {
            loop.run()
            let first = try channel.readOutbound(as: HTTPServerResponsePart.self)
            guard case .head(let head)? = first else { return nil }
            var body = ""
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                if case .body(.byteBuffer(let buffer)) = part { body += String(buffer: buffer) }
                if case .end = part { break }
            }
            return (head.status, head.headers, body)
        }
    }

    @Test func declaredLengthOverTheLimitIsRefusedBeforeTheBody() throws {
        let harness = try Harness { $0.maxMessageBytes = 10 }
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Length", "11"), ("Content-Type", "application/json")])
        let response = try #require(try harness.response())
        #expect(response.status == .payloadTooLarge)
        #expect(response.headers["Connection"] == ["close"])
        #expect(response.body.contains(#""code":"too_large""#))
        // The rest of the request is dropped, and nothing else is answered.
        try harness.body("12345678901")
        try harness.end()
        #expect(try harness.response() == nil)
        #expect(!harness.channel.isActive)
    }

    @Test func receivedBodyOverTheLimitIsRefusedAsSoonAsItPassesIt() throws {
        let harness = try Harness { $0.maxMessageBytes = 10 }
        try harness.head(.POST, "/api/publish?topic=a", [("Transfer-Encoding", "chunked")])
        try harness.body("123456")
        #expect(try harness.response() == nil)
        try harness.body("123456")
        #expect(try harness.response()?.status == .payloadTooLarge)
    }

    @Test func batchesHaveTheirOwnLimit() throws {
        let harness = try Harness { $0.maxMessageBytes = 10; $0.maxBatchBytes = 100 }
        let batch = #"[{"topic":"a","data":"0123456789"}]"#
        try harness.head(.POST, "/api/publish", [("Content-Length", "\(batch.utf8.count)"), ("Content-Type", "application/json")])
        try harness.body(batch)
        try harness.end()
        let response = try #require(try harness.response())
        #expect(response.status == .ok)
        #expect(response.body == "{\"results\":[{}]}\n")
    }

    @Test func routesAndMethods() throws {
        let harness = try Harness()
        try harness.head(.HEAD, "/healthz")
        try harness.end()
        let head = try #require(try harness.response())
        #expect(head.status == .ok && head.body.isEmpty && head.headers["Content-Length"] == ["3"])
        try harness.head(.GET, "/metrics")
        try harness.end()
        let metrics = try #require(try harness.response())
        #expect(metrics.body == "m 1\n")
        try harness.head(.DELETE, "/metrics")
        try harness.end()
        let wrong = try #require(try harness.response())
        #expect(wrong.status == .methodNotAllowed && wrong.headers["Allow"] == ["GET"])
        try harness.head(.GET, "/ws")
        try harness.end()
        #expect(try harness.response()?.status == .upgradeRequired)
    }

    @Test func idleConnectionsAreClosedAndAnsweredOnesRearmTheTimer() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        harness.loop.advanceTime(by: .seconds(4))
        try harness.head(.GET, "/healthz")
        try harness.end()
        #expect(try harness.response()?.status == .ok)
        harness.loop.advanceTime(by: .seconds(4))
        #expect(harness.channel.isActive)  // re-armed by the answer
        try harness.head(.GET, "/healthz")  // a slow request: the head, then nothing
        harness.loop.advanceTime(by: .seconds(2))
        #expect(!harness.channel.isActive)
    }
}
