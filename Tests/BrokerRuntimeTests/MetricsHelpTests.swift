import BrokerRuntime
import BrokerServer
import Prometheus
import Testing

/// `# HELP` lines added to the Prometheus exposition (MetricsHelp.swift).
@Suite struct MetricsHelpTests {
    func added(_ text: String) -> String {
        String(decoding: MetricsHelp.adding(to: Array(text.utf8)), as: UTF8.self)
    }

    @Test func helpGoesBeforeTheTypeLineOfKnownFamiliesOnly() {
        let exposition = "# TYPE broker_connections gauge\nbroker_connections 3\n# TYPE other_total counter\nother_total 1\n"
        #expect(added(exposition) == """
            # HELP broker_connections Open WebSocket connections.
            # TYPE broker_connections gauge
            broker_connections 3
            # TYPE other_total counter
            other_total 1

            """)
    }

    @Test func existingHelpIsKeptAndNotRepeated() {
        let exposition = "# HELP broker_connections mine\n# TYPE broker_connections gauge\nbroker_connections 3"
        #expect(added(exposition) == exposition)
    }

    @Test func everyFamilyTheBrokerRegistersGetsHelp() {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[BrokerMetrics.journalAppendLabel] = BrokerMetrics.journalAppendBuckets
        _ = BrokerMetrics(factory: factory)
        let lines = String(decoding: MetricsHelp.adding(to: registry.emitToBuffer()), as: UTF8.self)
            .split(separator: "\n")
        let typeLines = lines.indices.filter { lines[$0].hasPrefix("# TYPE ") }
        #expect(typeLines.count >= 15)
        for index in typeLines {
            let name = lines[index].split(separator: " ")[2]
            #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "no help for \(name)")
        }
    }
}
