import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP/1.1 request to the broker's HTTP API, on SwiftNIO: `broker-cli retained ls` and
/// `stats`, `broker retained clear` and `broker healthcheck`. The answer's status and body.
/// Small on purpose: one request per connection, `Connection: close`, the whole body in memory.
/// No Foundation networking, so neither executable links libcurl (the Docker image has none).
public struct APIRequest: Sendable {
    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public enum Failure: Error, CustomStringConvertible {
        case badURL(String)
        case cannotConnect(String, any Error)
        case failed(String, any Error)
        case timedOut(String)

        public var description: String {
            switch self {
            case .badURL(let url): "not an http:// or https:// URL: \(url)"
            case .cannotConnect(let url, let error): "cannot connect to \(url): \(error)"
            case .failed(let url, let error): "\(url): \(error)"
            case .timedOut(let url): "\(url): no answer in time"
            }
        }
    }

    public var method: HTTPMethod
    public var url: String
    public var headers: [(String, String)]
    /// For https:// URLs; nil: the system's trust roots, with verification.
    public var tls: TLSConfiguration?
    /// For connecting, and again for the whole exchange after it.
    public var timeout: Duration

    public init(
        _ method: HTTPMethod = .GET, url: String, headers: [(String, String)] = [], tls: TLSConfiguration? = nil,
        timeout: Duration
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.tls = tls
        self.timeout = timeout
    }

    public func run() async throws(Failure) -> Response {
        let parts = try Self.split(url)
        let group = MultiThreadedEventLoopGroup.singleton
        let tlsContext: NIOSSLContext?
        do {
            tlsContext = parts.isTLS ? try NIOSSLContext(configuration: tls ?? .makeClientConfiguration()) : nil
        } catch {
            throw .cannotConnect(url, error)
        }
        let limit = TimeAmount.nanoseconds(
            timeout.components.seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue
                &+ timeout.components.attoseconds / 1_000_000_000)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(limit)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let tlsContext {
                            let sni = parts.host.first?.isNumber == true || parts.host.contains(":") ? nil : parts.host
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: sni))
                        }
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    }
                }
                .connect(host: parts.host, port: parts.port).get()
        } catch {
            throw .cannotConnect(url, error)
        }
        let promise = channel.eventLoop.makePromise(of: Response.self)
        // One limit for the whole exchange after connecting, too: a broker that accepts and
        // never answers does not hold the command forever.
        let timer = channel.eventLoop.scheduleTask(in: limit) {
            promise.fail(Failure.timedOut(url))
            channel.close(promise: nil)
        }
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: parts.target)
        head.headers.add(name: "Host", value: parts.hostHeader)
        head.headers.add(name: "Connection", value: "close")
        head.headers.add(name: "Accept", value: "application/json")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        do {
            // Made and added on the channel's loop: the handler is not Sendable.
            try await channel.eventLoop.submit {
                try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
            }.get()
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil)).get()
            let response = try await promise.futureResult.get()
            timer.cancel()
            try? await channel.close().get()
            return response
        } catch let failure as Failure {
            throw failure
        } catch {
            timer.cancel()
            channel.close(promise: nil)
            throw .failed(url, error)
        }
    }

    public struct URLParts: Equatable, Sendable {
        public var isTLS: Bool
        public var host: String
        public var port: Int
        public var hostHeader: String
        public var target: String

        public init(isTLS: Bool, host: String, port: Int, hostHeader: String, target: String) {
            self.isTLS = isTLS
            self.host = host
            self.port = port
            self.hostHeader = hostHeader
            self.target = target
        }
    }

    /// `https://h:8443/a?b` → TLS, h, 8443, "/a?b". IPv6 literals in brackets.
    public static func split(_ url: String) throws(Failure) -> URLParts {
        let isTLS: Bool
        var rest: Substring
        if url.hasPrefix("https://") {
            isTLS = true
            rest = url.dropFirst(8)
        } else if url.hasPrefix("http://") {
            isTLS = false
            rest = url.dropFirst(7)
        } else {
            throw .badURL(url)
        }
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        let target = slash == rest.endIndex ? "/" : String(rest[slash...])
        var host = authority
        var port = isTLS ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .badURL(url) }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()) else { throw .badURL(url) }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]) else { throw .badURL(url) }
            port = p
        }
        guard !host.isEmpty else { throw .badURL(url) }
        rest = rest[...]
        return URLParts(isTLS: isTLS, host: String(host), port: port, hostHeader: String(authority), target: target)
    }
}

/// Collects one HTTP response and completes the promise with it when it ends.
private final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<APIRequest.Response>
    private var status = 0
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<APIRequest.Response>) {
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(let buffer): body += buffer.readableBytesView
        case .end: promise.succeed(.init(status: status, body: body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}
