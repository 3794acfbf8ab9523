import BrokerRuntime
import BrokerServer
import Prometheus
import Foundation
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

/// The process metrics read from /proc (ProcessMetrics.swift).
@Suite struct ProcessMetricsTests {
    @Test func parsesProcFiles() {
        // A command with spaces and a parenthesis, as proc(5) allows.
        let stat = "4242 (broker (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 2048 "
            + "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0"
        let limits = """
            Limit                     Soft Limit           Hard Limit           Units
            Max cpu time              unlimited            unlimited            seconds
            Max open files            65536                1048576              files
            """
        let metrics = ProcessMetrics.read(
            stat: stat, limits: limits, systemStat: "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n", openFileDescriptors: 12,
            clockTicksPerSecond: 100, pageSize: 4096)
        #expect(metrics.cpuSeconds == 3.0)
        #expect(metrics.startTimeSeconds == 1_700_000_010)
        #expect(metrics.virtualMemoryBytes == 123_456_789)
        #expect(metrics.residentMemoryBytes == 2048 * 4096)
        #expect(metrics.maxFileDescriptors == 65536)
        #expect(metrics.openFileDescriptors == 12)
        let text = String(decoding: metrics.exposition, as: UTF8.self)
        #expect(text.contains("# HELP process_cpu_seconds_total User and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 3.0\n"))
        #expect(text.contains("\nprocess_start_time_seconds 1700000010.00\n"))
        #expect(text.contains("\nprocess_max_fds 65536\n"))
    }

    @Test func unreadableFilesGiveNoSeries() {
        let metrics = ProcessMetrics.read(
            stat: nil, limits: nil, systemStat: nil, openFileDescriptors: nil, clockTicksPerSecond: 100, pageSize: 4096)
        #expect(metrics == ProcessMetrics())
        #expect(metrics.exposition.isEmpty)
    }

    #if os(Linux)
    @Test func thisProcessOnLinux() throws {
        let before = Date().timeIntervalSince1970
        let metrics = ProcessMetrics.current()
        let open = try #require(metrics.openFileDescriptors)
        let max = try #require(metrics.maxFileDescriptors)
        #expect(open > 2 && open <= max)
        #expect(try #require(metrics.residentMemoryBytes) > 1 << 20)
        #expect(try #require(metrics.cpuSeconds) > 0)
        let start = try #require(metrics.startTimeSeconds)
        #expect(start <= before + 1 && start > before - 24 * 3600)
        // Every family of the full exposition has its help, these included.
        let lines = String(decoding: MetricsHelp.exposition(Array("# TYPE broker_connections gauge\nbroker_connections 1\n".utf8)), as: UTF8.self)
            .split(separator: "\n")
        for index in lines.indices where lines[index].hasPrefix("# TYPE ") {
            let name = lines[index].split(separator: " ")[2]
            #expect(index > 0 && lines[index - 1].hasPrefix("# HELP \(name) "), "no help for \(name)")
        }
        #expect(lines.contains { $0.hasPrefix("process_open_fds ") })
    }
    #endif
}
