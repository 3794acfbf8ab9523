import BrokerJournal
import BrokerProtocol
import CoreMetrics
import NIOConcurrencyHelpers
import NIOCore

/// The broker's metrics, exported through swift-metrics (the executable bootstraps
/// swift-prometheus; see docs/operations.md for the list).
///
/// The delivery path never touches a metric: each event loop counts in plain integers
/// (`ShardCounters`) and `collect` sums them and moves the swift-metrics counters forward by the
/// difference since the previous collection. `collect` runs periodically (`MetricsService`) and
/// before every scrape of `GET /metrics`.
public final class BrokerMetrics: Sendable {
    /// Buckets for the journal append latency histogram (`broker_journal_append_seconds`):
    /// appends take well under the default buckets' 5 ms floor.
    public static let journalAppendBuckets: [Duration] = [
        .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
        .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
        .seconds(1),
    ]
    public static let journalAppendLabel = "broker_journal_append_seconds"

    private let connections: Gauge
    private let subscriptions: Gauge
    private let connects: Counter
    private let disconnects: [Counter]
    private let upgradesRefused: [Counter]
    private let publishedMessages: [Counter]
    private let publishedBytes: [Counter]
    private let deliveredMessages: [Counter]  // text, binary
    private let deliveredBytes: [Counter]
    private let replayedMessages: Counter
    private let journalAppend: Timer
    private let journalBytes: Gauge
    private let journalMessages: Gauge
    private let journalTopics: Gauge
    private let journalLastOffset: Gauge
    private let journalPrunedMessages: Counter
    private let compressionInputBytes: Counter
    private let compressionOutputBytes: Counter
    private let uptime: Gauge
    private let factory: any MetricsFactory
    private let state = NIOLockedValueBox(State())

    private struct State {
        var exported = ShardCounters()
        var exportedPrunedMessages = 0
        var protocolErrors: [String: Counter] = [:]
    }

    /// Metrics that go nowhere.
    public static let disabled = BrokerMetrics(factory: NOOPMetricsHandler.instance)

    public init(factory: any MetricsFactory) {
        self.factory = factory
        func counter(_ label: String, _ dimensions: [(String, String)] = []) -> Counter {
            Counter(label: label, dimensions: dimensions, factory: factory)
        }
        func gauge(_ label: String) -> Gauge { Gauge(label: label, dimensions: [], factory: factory) }
        connections = gauge("broker_connections")
        subscriptions = gauge("broker_subscriptions")
        connects = counter("broker_connects_total")
        disconnects = DisconnectReason.allCases.map { counter("broker_disconnects_total", [("reason", $0.rawValue)]) }
        upgradesRefused = UpgradeRefusalReason.allCases.map { counter("broker_upgrades_refused_total", [("reason", $0.rawValue)]) }
        var published: [Counter] = []
        var publishedBytes: [Counter] = []
        for retained in [false, true] {
            for kind in ["text", "binary"] {
                let dimensions = [("kind", kind), ("retained", String(retained))]
                published.append(counter("broker_messages_published_total", dimensions))
                publishedBytes.append(counter("broker_published_bytes_total", dimensions))
            }
        }
        publishedMessages = published
        self.publishedBytes = publishedBytes
        deliveredMessages = ["text", "binary"].map { counter("broker_messages_delivered_total", [("kind", $0)]) }
        deliveredBytes = ["text", "binary"].map { counter("broker_delivered_bytes_total", [("kind", $0)]) }
        replayedMessages = counter("broker_messages_replayed_total")
        journalAppend = Timer(label: Self.journalAppendLabel, dimensions: [], factory: factory)
        journalBytes = gauge("broker_journal_bytes")
        journalMessages = gauge("broker_journal_messages")
        journalTopics = gauge("broker_journal_topics")
        journalLastOffset = gauge("broker_journal_last_offset")
        journalPrunedMessages = counter("broker_journal_pruned_messages_total")
        compressionInputBytes = counter("broker_compression_input_bytes_total")
        compressionOutputBytes = counter("broker_compression_output_bytes_total")
        uptime = gauge("broker_uptime_seconds")
        // Prometheus's build-info convention: a gauge of 1 whose labels carry the version.
        Gauge(label: "broker_build_info", dimensions: [("version", BrokerVersion.number)], factory: factory).record(1)
    }

    /// Records one journal append's latency (called on the journal writer).
    func journalAppended(after latency: TimeAmount) {
        journalAppend.recordNanoseconds(latency.nanoseconds)
    }

    /// Sums the shards' counters and exports them, with the gauges and the journal's figures.
    func collect(_ broker: Broker, on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        let uptimeSeconds = Double((NIODeadline.now() - broker.startedAt).nanoseconds) / 1e9
        return broker.totals(on: eventLoop)
            .and(broker.journal.stats(on: eventLoop))
            .map { totals, journal in
                self.export(totals.counters, prunedMessages: journal.prunedMessages)
                self.connections.record(totals.connections)
                self.subscriptions.record(totals.subscriptions)
                self.journalBytes.record(journal.bytes)
                self.journalMessages.record(journal.messages)
                self.journalTopics.record(journal.topics)
                self.journalLastOffset.record(Int64(clamping: journal.lastOffset))
                self.uptime.record(uptimeSeconds)
            }
    }

    private func export(_ collected: ShardCounters, prunedMessages: Int) {
        let factory = self.factory
        state.withLockedValue { state in
            let last = state.exported
            // A scrape and the periodic export may collect concurrently and arrive out of order:
            // never move a counter back (and then forward again, counting twice).
            var total = collected
            total.formMaximum(last)
            func advance(_ counter: Counter, _ now: Int, _ before: Int) {
                if now > before { counter.increment(by: Int64(now - before)) }
            }
            advance(connects, total.connects, last.connects)
            for i in disconnects.indices { advance(disconnects[i], total.disconnects[i], last.disconnects[i]) }
            for i in upgradesRefused.indices { advance(upgradesRefused[i], total.upgradesRefused[i], last.upgradesRefused[i]) }
            for i in publishedMessages.indices {
                advance(publishedMessages[i], total.publishedMessages[i], last.publishedMessages[i])
                advance(publishedBytes[i], total.publishedBytes[i], last.publishedBytes[i])
            }
            advance(deliveredMessages[0], total.deliveredTextMessages, last.deliveredTextMessages)
            advance(deliveredMessages[1], total.deliveredBinaryMessages, last.deliveredBinaryMessages)
            advance(deliveredBytes[0], total.deliveredTextBytes, last.deliveredTextBytes)
            advance(deliveredBytes[1], total.deliveredBinaryBytes, last.deliveredBinaryBytes)
            advance(replayedMessages, total.replayedMessages, last.replayedMessages)
            for (code, count) in total.protocolErrors {
                let counter =
                    state.protocolErrors[code]
                    ?? Counter(label: "broker_protocol_errors_total", dimensions: [("code", code)], factory: factory)
                state.protocolErrors[code] = counter
                advance(counter, count, last.protocolErrors[code] ?? 0)
            }
            advance(compressionInputBytes, total.compressionInputBytes, last.compressionInputBytes)
            advance(compressionOutputBytes, total.compressionOutputBytes, last.compressionOutputBytes)
            advance(journalPrunedMessages, prunedMessages, state.exportedPrunedMessages)
            state.exportedPrunedMessages = max(prunedMessages, state.exportedPrunedMessages)
            state.exported = total
        }
    }
}

/// Runs `BrokerMetrics.collect` every `interval` while the broker serves (a swift-service-lifecycle
/// service).
public struct MetricsService: Sendable {
    let server: BrokerServer
    let interval: Duration

    public init(server: BrokerServer, interval: Duration) {
        self.server = server
        self.interval = interval
    }
}

import ServiceLifecycle

extension MetricsService: Service {
    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                await server.collectMetrics()
            }
        }
    }
}
