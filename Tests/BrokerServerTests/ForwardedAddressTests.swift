import BrokerJournal
import BrokerTestSupport
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BrokerServer

/// `http.trusted-proxies`: whose `X-Forwarded-For`/`Forwarded` is believed, and where the client
/// address it gives is used (the access log, the per-IP limit, `/api/connections`).
@Suite struct ForwardedAddressTests {
    static func headers(_ pairs: [(String, String)]) -> HTTPHeaders { HTTPHeaders(pairs) }
    static func peer(_ ip: String) throws -> SocketAddress { try SocketAddress(ipAddress: ip, port: 40000) }
    static let proxies = ["10.0.0.0/8", "fd00::/8", "192.0.2.10"].compactMap(AddressBlock.init)

    @Test func addressBlocks() throws {
        let ten = try #require(AddressBlock("10.0.0.0/8"))
        #expect(ten.contains("10.255.1.2") && !ten.contains("11.0.0.1"))
        #expect(ten.contains("::ffff:10.1.1.1"), "IPv4-mapped IPv6 counts as IPv4")
        let single = try #require(AddressBlock("192.0.2.10"))
        #expect(single.contains("192.0.2.10") && !single.contains("192.0.2.11"))
        let odd = try #require(AddressBlock("192.168.0.0/23"))
        #expect(odd.contains("192.168.1.255") && !odd.contains("192.168.2.0"))
        let v6 = try #require(AddressBlock("fd00::/8"))
        #expect(v6.contains("fd12::1") && !v6.contains("fe80::1") && !v6.contains("10.0.0.1"))
        #expect(try #require(AddressBlock("0.0.0.0/0")).contains("8.8.8.8"))
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "example.com", "10.0.0.0/x", "::1/129", "1.2.3.4/8/9"] {
            #expect(AddressBlock(bad) == nil, "\(bad)")
        }
    }

    @Test func withoutTrustedProxiesTheHeadersAreIgnored() throws {
        let forged = Self.headers([("X-Forwarded-For", "203.0.113.5"), ("Forwarded", "for=203.0.113.6")])
        #expect(ClientAddress.resolve(peer: try Self.peer("10.1.1.1"), headers: forged, trustedProxies: []) == "10.1.1.1")
        // An untrusted peer's headers are ignored too.
        #expect(ClientAddress.resolve(peer: try Self.peer("198.51.100.1"), headers: forged, trustedProxies: Self.proxies) == "198.51.100.1")
    }

    @Test func aTrustedProxyNamesTheClient() throws {
        let peer = try Self.peer("10.0.0.2")
        func resolve(_ pairs: [(String, String)]) -> String? {
            ClientAddress.resolve(peer: peer, headers: Self.headers(pairs), trustedProxies: Self.proxies)
        }
        #expect(resolve([("X-Forwarded-For", "203.0.113.5")]) == "203.0.113.5")
        // Read from the right: the client's own claims (left) are skipped past the first untrusted hop.
        #expect(resolve([("X-Forwarded-For", "1.1.1.1, 203.0.113.5, 10.0.0.9")]) == "203.0.113.5")
        #expect(resolve([("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "203.0.113.5")]) == "203.0.113.5")
        // Every hop trusted: the leftmost.
        #expect(resolve([("X-Forwarded-For", "10.0.0.7, 10.0.0.8")]) == "10.0.0.7")
        // Forwarded (RFC 7239) when there is no X-Forwarded-For: quotes, brackets and ports removed.
        #expect(resolve([("Forwarded", #"for=192.0.2.60;proto=https;by=203.0.113.43"#)]) == "192.0.2.60")
        #expect(resolve([("Forwarded", #"for="[2001:db8::17]:4711", for=10.0.0.3"#)]) == "2001:db8::17")
        #expect(resolve([("Forwarded", "for=198.51.100.9:8080")]) == "198.51.100.9")
        // No header, or garbage in it: the proxy itself.
        #expect(resolve([]) == "10.0.0.2")
        #expect(resolve([("X-Forwarded-For", "not-an-address")]) == "10.0.0.2")
        #expect(resolve([("Forwarded", "for=_hidden")]) == "10.0.0.2")
    }

    // MARK: the access log on an EmbeddedChannel

    struct Harness {
        let channel: EmbeddedChannel
        let loop = EmbeddedEventLoop()
        let logs = LogCapture()

        init(peer: String, configure: (inout BrokerConfiguration) -> Void) throws {
            var configuration = BrokerConfiguration()
            configure(&configuration)
            let broker = Broker(
                configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
                logger: logs.logger())
            let hooks = ServerHooks(isListening: { true }, renderMetrics: { [] }, admission: .open(configuration))
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: ["/ws"]))
            try channel.connect(to: SocketAddress(ipAddress: peer, port: 5555)).wait()
        }

        /// Sends a GET and returns its response status.
        func get(_ uri: String, _ headers: [(String, String)] = []) throws -> HTTPResponseStatus? {
            try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: .GET, uri: uri, headers: HTTPHeaders(headers))))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            loop.run()
            var status: HTTPResponseStatus?
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                if case .head(let head) = part { status = head.status }
                if case .end = part { break }
            }
            return status
        }
    }

    @Test func accessLogNamesTheForwardedClientAndDropsTheQuery() throws {
        let harness = try Harness(peer: "10.0.0.2") {
            $0.accessLog = true
            $0.trustedProxies = Self.proxies
        }
        #expect(try harness.get("/healthz?token=s3cret", [("X-Forwarded-For", "203.0.113.5")]) == .ok)
        #expect(try harness.get("/nope") == .notFound)
        let lines = harness.logs.records("http request")
        #expect(lines.count == 2)
        let first = try #require(lines.first)
        #expect(first.metadata["client"] == "203.0.113.5")
        #expect(first.metadata["path"] == "/healthz")
        #expect(first.metadata["method"] == "GET")
        #expect(first.metadata["status"] == "200")
        #expect(first.metadata["ms"].flatMap(Double.init) != nil)
        #expect(!"\(first.metadata)".contains("s3cret"))
        #expect(lines.last?.metadata["client"] == "10.0.0.2")
        #expect(lines.last?.metadata["status"] == "404")
    }

    @Test func anUntrustedPeerIsLoggedAsItself() throws {
        let harness = try Harness(peer: "198.51.100.1") {
            $0.accessLog = true
            $0.trustedProxies = Self.proxies
        }
        #expect(try harness.get("/healthz", [("X-Forwarded-For", "203.0.113.5")]) == .ok)
        #expect(harness.logs.records("http request").map { $0.metadata["client"] } == ["198.51.100.1"])
    }

    @Test func noAccessLogByDefault() throws {
        let harness = try Harness(peer: "10.0.0.2") { _ in }
        #expect(try harness.get("/healthz") == .ok)
        #expect(harness.logs.records("http request").isEmpty)
        #expect(BrokerConfiguration().accessLog == false && BrokerConfiguration().trustedProxies.isEmpty)
    }

    // MARK: end to end: the per-IP limit and /api/connections

    static func connections(_ broker: TestBroker) async throws -> [String] {
        let response = try await HTTPTestClient.request("GET", "/api/connections", port: broker.port)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        let list = try #require(object["connections"] as? [[String: Any]])
        return list.compactMap { $0["remoteAddress"] as? String }.sorted()
    }

    @Test func aTrustedProxysClientCountsForThePerIPLimitAndIsListed() async throws {
        try await TestBroker.with(configure: {
            $0.trustedProxies = [AddressBlock("127.0.0.1")!]
            $0.maxConnectionsPerIP = 1
        }) { broker in
            let first = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["X-Forwarded-For: 198.51.100.7"])
            _ = try await first.nextMessage()
            // Same forwarded client: over its limit, though the TCP peer is the proxy for both.
            let second = try await RawWebSocketClient.connect(
                port: broker.port, extraHeaders: ["X-Forwarded-For: 198.51.100.7"], expectUpgrade: false)
            #expect(second.handshakeResponse.hasPrefix("HTTP/1.1 503"), "\(second.handshakeResponse)")
            await second.close()
            let other = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Forwarded: for=198.51.100.8"])
            _ = try await other.nextMessage()
            #expect(try await Self.connections(broker) == ["198.51.100.7", "198.51.100.8"])
            await first.close()
            await other.close()
        }
    }

    @Test func withoutTrustedProxiesTheForwardedHeaderChangesNothing() async throws {
        try await TestBroker.with(configure: { $0.maxConnectionsPerIP = 2 }) { broker in
            let first = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["X-Forwarded-For: 198.51.100.7"])
            _ = try await first.nextMessage()
            let second = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["X-Forwarded-For: 198.51.100.9"])
            _ = try await second.nextMessage()
            // Both count for 127.0.0.1, which is now at its limit of 2.
            let third = try await RawWebSocketClient.connect(
                port: broker.port, extraHeaders: ["X-Forwarded-For: 198.51.100.10"], expectUpgrade: false)
            #expect(third.handshakeResponse.hasPrefix("HTTP/1.1 503"), "\(third.handshakeResponse)")
            await third.close()
            let addresses = try await Self.connections(broker)
            #expect(addresses.count == 2 && addresses.allSatisfy { $0.hasPrefix("127.0.0.1:") }, "\(addresses)")
            await first.close()
            await second.close()
        }
    }
}
