import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// `limits.max-connections` and `limits.max-connections-per-ip`: the counter alone, then the
/// listener's real pipeline on EmbeddedChannels sharing one broker: an upgrade past a cap
/// answers 503 with a plain-text reason and is never upgraded, `/healthz` still answers, and a
/// closed connection gives its place back.
@Suite struct ConnectionAdmissionTests {
    @Test func theCounterRefusesPastEitherCapAndGivesPlacesBack() {
        let admission = ConnectionAdmission(maxConnections: 3, maxPerAddress: 2)
        #expect(admission.admit("10.0.0.1") == nil)
        #expect(admission.admit("10.0.0.1") == nil)
        #expect(admission.admit("10.0.0.1") == .perAddress(limit: 2))
        #expect(admission.admit("10.0.0.2") == nil)
        #expect(admission.admit("10.0.0.3") == .total(limit: 3))
        #expect(admission.admit(nil) == .total(limit: 3))
        #expect(admission.count == 3)
        admission.release("10.0.0.1")
        #expect(admission.count(from: "10.0.0.1") == 1)
        #expect(admission.admit("10.0.0.3") == nil)
        #expect(admission.count == 3)
    }

    @Test func zeroMeansNoCap() {
        let admission = ConnectionAdmission(maxConnections: 0, maxPerAddress: 0)
        for _ in 0..<10_000 { #expect(admission.admit("10.0.0.1") == nil) }
        #expect(admission.count == 10_000)
    }

    struct Harness {
        let loop = EmbeddedEventLoop()
        let broker: Broker

        init(configure: (inout BrokerConfiguration) -> Void) {
            var configuration = BrokerConfiguration()
            configuration.pingInterval = .seconds(3_600)
            configure(&configuration)
            broker = Broker(
                configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
                logger: Logger(label: "test"))
        }

        /// A new connection from `address` that sends `request`; returns it and what it got back.
        func request(_ request: String, from address: String = "10.0.0.1") throws -> (EmbeddedChannel, String) {
            let channel = EmbeddedChannel(loop: loop)
            let hooks = ServerHooks(isListening: { true }, renderMetrics: nil, admission: .open(broker.configuration))
            try BrokerServer.configurePipeline(channel, broker: broker, hooks: hooks)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
            channel.remoteAddress = try SocketAddress(ipAddress: address, port: 40_000)  // after connect, which sets it
            do {
                try channel.writeInbound(ByteBuffer(string: request))
            } catch is NIOWebSocketUpgradeError {
                // A refused upgrade reaches the pipeline's end as an error, then the request goes
                // on to the HTTP handler (as for a missing token).
            }
            loop.run()
            var bytes: [UInt8] = []
            while let part = try channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let buffer) = part { bytes += buffer.readableBytesView }
            }
            return (channel, String(decoding: bytes, as: UTF8.self))
        }

        func upgrade(from address: String = "10.0.0.1") throws -> (EmbeddedChannel, String) {
            try request(ServerPipelineTests.upgrade, from: address)
        }
    }

    @Test func anUpgradePastTheTotalCapAnswers503AndHealthzStillAnswers() throws {
        let harness = Harness { $0.maxConnections = 2; $0.maxConnectionsPerIP = 0 }
        let (first, firstResponse) = try harness.upgrade(from: "10.0.0.1")
        let (_, secondResponse) = try harness.upgrade(from: "10.0.0.2")
        #expect(firstResponse.hasPrefix("HTTP/1.1 101"))
        #expect(secondResponse.hasPrefix("HTTP/1.1 101"))

        let (third, refused) = try harness.upgrade(from: "10.0.0.3")
        #expect(refused.hasPrefix("HTTP/1.1 503"))
        #expect(refused.lowercased().contains("content-type: text/plain"))
        #expect(refused.contains("retry later"))
        #expect(!refused.contains("welcome"))
        #expect(!third.isActive)  // closed once answered, never upgraded
        #expect(harness.broker.admission.count == 2)

        let (_, health) = try harness.request("GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n", from: "10.0.0.3")
        #expect(health.hasPrefix("HTTP/1.1 200"))

        // A connection that closes gives its place back.
        try first.close().wait()
        harness.loop.run()
        #expect(harness.broker.admission.count == 1)
        let (_, again) = try harness.upgrade(from: "10.0.0.3")
        #expect(again.hasPrefix("HTTP/1.1 101"))
    }

    @Test func anUpgradePastThePerAddressCapAnswers503() throws {
        let harness = Harness { $0.maxConnections = 0; $0.maxConnectionsPerIP = 2 }
        let (_, first) = try harness.upgrade(from: "10.0.0.1")
        let (_, second) = try harness.upgrade(from: "10.0.0.1")
        let (_, third) = try harness.upgrade(from: "10.0.0.1")
        let (_, other) = try harness.upgrade(from: "10.0.0.2")
        #expect(first.hasPrefix("HTTP/1.1 101") && second.hasPrefix("HTTP/1.1 101"))
        #expect(third.hasPrefix("HTTP/1.1 503") && third.contains("per IP address"))
        #expect(other.hasPrefix("HTTP/1.1 101"))
        #expect(harness.broker.admission.count(from: "10.0.0.1") == 2)
    }

    @Test func plainHTTPRequestsTakeNoPlace() throws {
        let harness = Harness { $0.maxConnections = 1; $0.maxConnectionsPerIP = 1 }
        for _ in 0..<5 {
            let (_, health) = try harness.request("GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
            #expect(health.hasPrefix("HTTP/1.1 200"))
        }
        #expect(harness.broker.admission.count == 0)
        let (_, upgraded) = try harness.upgrade()
        #expect(upgraded.hasPrefix("HTTP/1.1 101"))
    }
}
