import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Prometheus
import Testing

@testable import BrokerServer

/// `broker_upgrades_refused_total{reason}`: every refusal of a WebSocket upgrade is counted where
/// it happens (the server's whole pipeline on EmbeddedChannels), and exported.
@Suite struct UpgradeRefusalMetricsTests {
    final class Harness {
        let loop = EmbeddedEventLoop()
        let broker: Broker
        let admission: Admission
        let registry = PrometheusCollectorRegistry()

        init(configure: (inout BrokerConfiguration) -> Void) async throws {
            var configuration = BrokerConfiguration()
            configuration.pingInterval = .seconds(3_600)
            configure(&configuration)
            broker = Broker(
                configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
                logger: Logger(label: "test"), metrics: BrokerMetrics(factory: PrometheusMetricsFactory(registry: registry)))
            admission = Admission(authenticator: try await Authenticator.make(configuration), configuration: configuration)
        }

        /// Sends an upgrade request (with `headers` added, `Host` replaced when given) from
        /// `address`; returns the status line.
        func upgrade(from address: String = "10.0.0.1", headers: [String] = [], host: String = "localhost") throws -> String {
            let channel = EmbeddedChannel(loop: loop)
            let hooks = ServerHooks(isListening: { true }, renderMetrics: nil, admission: admission)
            try BrokerServer.configurePipeline(channel, broker: broker, hooks: hooks)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 8080)).wait()
            channel.remoteAddress = try SocketAddress(ipAddress: address, port: 40_000)
            var request = ServerPipelineTests.upgrade.replacingOccurrences(of: "Host: localhost", with: "Host: \(host)")
            for header in headers { request = request.replacingOccurrences(of: "Upgrade: websocket\r\n", with: "Upgrade: websocket\r\n\(header)\r\n") }
            do { try channel.writeInbound(ByteBuffer(string: request)) } catch is NIOWebSocketUpgradeError {}
            loop.run()
            var bytes: [UInt8] = []
            while let part = try channel.readOutbound(as: IOData.self) {
                if case .byteBuffer(let buffer) = part { bytes += buffer.readableBytesView }
            }
            return String(decoding: bytes, as: UTF8.self).split(separator: "\r\n").first.map(String.init) ?? ""
        }

        func refused(_ reason: UpgradeRefusalReason) -> Int {
            broker.shards[0].counters.upgradesRefused[UpgradeRefusalReason.allCases.firstIndex(of: reason)!]
        }

        /// The exported value of `broker_upgrades_refused_total{reason=…}`.
        func exported(_ reason: UpgradeRefusalReason) throws -> String? {
            let collected = broker.metrics.collect(broker, on: loop)
            loop.run()
            try collected.wait()
            let text = String(decoding: registry.emitToBuffer(), as: UTF8.self)
            let prefix = #"broker_upgrades_refused_total{reason="\#(reason.rawValue)"} "#
            return text.split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
    }

    @Test func connectionLimitsAreCountedByCap() async throws {
        let harness = try await Harness { $0.maxConnections = 2; $0.maxConnectionsPerIP = 1 }
        #expect(try harness.upgrade(from: "10.0.0.1").hasPrefix("HTTP/1.1 101"))
        #expect(try harness.upgrade(from: "10.0.0.1").hasPrefix("HTTP/1.1 503"))
        #expect(try harness.upgrade(from: "10.0.0.2").hasPrefix("HTTP/1.1 101"))
        #expect(try harness.upgrade(from: "10.0.0.3").hasPrefix("HTTP/1.1 503"))
        #expect(harness.refused(.perIPLimit) == 1 && harness.refused(.connectionLimit) == 1)
        #expect(try harness.exported(.connectionLimit) == "1" && harness.exported(.perIPLimit) == "1")
    }

    @Test func credentialsOriginsAndHostsAreCountedByReason() async throws {
        let harness = try await Harness { $0.clientTokens = ["t"] }
        #expect(try harness.upgrade().hasPrefix("HTTP/1.1 401"))
        #expect(try harness.upgrade(headers: ["Authorization: Bearer wrong"]).hasPrefix("HTTP/1.1 401"))
        #expect(try harness.upgrade(headers: ["Authorization: Bearer t", "Origin: https://evil.example"]).hasPrefix("HTTP/1.1 403"))
        #expect(try harness.upgrade(headers: ["Authorization: Bearer t"], host: "evil.example").hasPrefix("HTTP/1.1 421"))
        #expect(try harness.upgrade(headers: ["Authorization: Bearer t"]).hasPrefix("HTTP/1.1 101"))
        #expect(harness.refused(.unauthorized) == 2 && harness.refused(.origin) == 1 && harness.refused(.host) == 1)
        #expect(try harness.exported(.unauthorized) == "2" && harness.exported(.origin) == "1" && harness.exported(.host) == "1")
        #expect(try harness.exported(.connectionLimit) == "0")
    }
}
