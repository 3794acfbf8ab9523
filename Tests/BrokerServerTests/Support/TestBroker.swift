import BrokerJournal
import BrokerServer
import Logging
import NIOCore
import Prometheus

/// Starts the real broker on an ephemeral port for one test and stops it afterwards.
struct TestBroker {
    let server: BrokerServer
    let journal: any Journal
    /// The broker's own metrics registry (what `GET /metrics` renders).
    let registry: PrometheusCollectorRegistry
    var port: Int { server.port! }
    var url: String { "ws://127.0.0.1:\(port)/ws" }

    static func start(
        journal: any Journal = MemoryJournal(),
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> TestBroker {
        var configuration = BrokerConfiguration()
        configuration.port = 0
        configuration.eventLoopThreads = 2
        configure(&configuration)
        var logger = Logger(label: "test-broker")
        logger.logLevel = .warning
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[BrokerMetrics.journalAppendLabel] = BrokerMetrics.journalAppendBuckets
        let server = BrokerServer(
            configuration: configuration, journal: journal, logger: logger,
            metrics: BrokerMetrics(factory: factory), renderMetrics: { MetricsHelp.adding(to: registry.emitToBuffer()) })
        try await server.start()
        return TestBroker(server: server, journal: journal, registry: registry)
    }

    /// Runs `body` against a fresh broker and always shuts it down.
    static func with<T>(
        journal: any Journal = MemoryJournal(),
        configure: (inout BrokerConfiguration) -> Void = { _ in },
        _ body: (TestBroker) async throws -> T
    ) async throws -> T {
        let broker = try await start(journal: journal, configure: configure)
        do {
            let result = try await body(broker)
            await broker.stop()
            return result
        } catch {
            await broker.stop()
            throw error
        }
    }

    func stop() async {
        await server.shutdown()
    }

    /// A raw client that has already read its welcome; `extraHeaders` to offer extensions.
    func client(extraHeaders: [String] = []) async throws -> RawWebSocketClient {
        let client = try await RawWebSocketClient.connect(port: port, extraHeaders: extraHeaders)
        guard case .welcome = try await client.nextMessage() else { throw RawWebSocketClient.ClientError.handshake("no welcome") }
        return client
    }
}
