import BrokerJournal
import BrokerRuntime
import BrokerServer
import Logging
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
    /// Two event loops, a quiet logger, a 2 s shutdown grace period and no lame-duck window (the
    /// server's defaults are 10 s each), so a stop under live clients does not hold a test up;
    /// `configure` overrides any of it.
    package static func start(
        journal: any Journal = MemoryJournal(), port: Int = 0, logger: Logger? = nil,
        configure: (inout BrokerConfiguration) -> Void = { _ in }
    ) async throws -> TestBroker {
        var configuration = BrokerConfiguration()
        configuration.port = port
        configuration.eventLoopThreads = 2
        configuration.shutdownGracePeriod = .seconds(2)
        // Every client closed at once on stop, not spread over the lame-duck window (LameDuckTests
        // and ProcessLameDuckTests test the spread).
        configuration.lameDuckDuration = .zero
        // A test's reader is not a slow consumer because the machine starved it: at the suite's
        // busiest moment on a loaded machine readers stalled past the 10 s default, and the broker
        // rightly closed them (tests then failed on "I/O on closed channel"). Tests of the
        // slow-consumer rules set their own values (DeliveryIntegrationTests, ConnectionTimerTests).
        configuration.slowConsumerTimeout = .seconds(600) * Int64(testTimeoutScale.rounded(.up))
        configuration.maxOutboundBytes = 256 << 20
        // A raw test client answers pings only when it reads: a test that held a connection
        // without reading past ping-interval + pong-timeout on a loaded machine lost it to
        // keepalive. Keepalive is tested where it is the subject (ConnectionTimerTests on the
        // loop's clock; DeliveryIntegrationTests sets its own).
        configuration.pingInterval = .seconds(600) * Int64(testTimeoutScale.rounded(.up))
        configuration.pongTimeout = configuration.pongTimeout * Int64(testTimeoutScale.rounded(.up))
        // Nor is a test's connection idle because the machine starved the test between its connect
        // and its request (or between two requests): at load 20 a raw client's upgrade request
        // came after the 30 s default and met a closed channel. The idle timeout is tested where
        // it is the subject (HTTPAPITests, HTTPRequestHandlerTests set their own).
        configuration.httpIdleTimeout = .seconds(600) * Int64(testTimeoutScale.rounded(.up))
        configure(&configuration)
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[BrokerMetrics.journalAppendLabel] = BrokerMetrics.journalAppendBuckets
        let server = BrokerServer(
            configuration: configuration, journal: journal, logger: logger ?? quietLogger("test-broker"),
            metrics: BrokerMetrics(factory: factory), renderMetrics: { MetricsHelp.exposition(registry.emitToBuffer()) })
        try await server.start()
        guard let bound = server.port else {
            await server.shutdown()
            throw TestFailure("the broker has no port after start()")
        }
        return TestBroker(server: server, journal: journal, registry: registry, port: bound)
    }

    /// Runs `body` against a fresh broker and always shuts it down.
    package static func with<T>(
        journal: any Journal = MemoryJournal(), logger: Logger? = nil,
        configure: (inout BrokerConfiguration) -> Void = { _ in },
        _ body: (TestBroker) async throws -> T
    ) async throws -> T {
        let broker = try await start(journal: journal, logger: logger, configure: configure)
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
