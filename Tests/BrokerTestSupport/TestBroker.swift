import BrokerJournal
import BrokerRuntime
import BrokerServer
import NIOCore
import Prometheus

/// The real broker, in process, on an ephemeral (or a given) port, with its own Prometheus
/// registry (what `GET /metrics` renders), for integration tests; `stop()` (or `with`) shuts it down.
package struct TestBroker: Sendable {
    package let server: BrokerServer
    package let journal: any Journal
    /// The broker's own metrics registry.
    package let registry: PrometheusCollectorRegistry
    package let port: Int
    package var url: String { "ws://127.0.0.1:\(port)/ws" }

    /// Starts a broker on `journal`; `port` 0 picks a free one (a restart passes the old port).
    /// Two event loops, a quiet logger and a 2 s shutdown grace period (the server's default is
    /// 10 s), so a stop under live clients does not hold a test up; `configure` overrides any of it.
    package static func start(
        journal: any Journal = MemoryJournal(), port: Int = 0,
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> TestBroker {
        var configuration = BrokerConfiguration()
        configuration.port = port
        configuration.eventLoopThreads = 2
        configuration.shutdownGracePeriod = .seconds(2)
        configure(&configuration)
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[BrokerMetrics.journalAppendLabel] = BrokerMetrics.journalAppendBuckets
        let server = BrokerServer(
            configuration: configuration, journal: journal, logger: quietLogger("test-broker"),
            metrics: BrokerMetrics(factory: factory), renderMetrics: { MetricsHelp.adding(to: registry.emitToBuffer()) })
        try await server.start()
        guard let bound = server.port else {
            await server.shutdown()
            throw TestFailure("the broker has no port after start()")
        }
        return TestBroker(server: server, journal: journal, registry: registry, port: bound)
    }

    /// Runs `body` against a fresh broker and always shuts it down.
    package static func with<T>(
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

    /// Stops the listener and closes every client (1001). The journal stays open (the caller's).
    package func stop() async {
        await server.shutdown()
    }
}
