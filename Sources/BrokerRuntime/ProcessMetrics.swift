import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The standard Prometheus process metrics (`process_open_fds`, `process_max_fds`,
/// `process_resident_memory_bytes`, `process_virtual_memory_bytes`, `process_cpu_seconds_total`,
/// `process_start_time_seconds`), read from /proc when `GET /metrics` is scraped.
///
/// swift-prometheus 2 has no process collector and swift-metrics' `SystemMetrics` lives in a
/// package this one does not use; these few files are simple enough to read here. On systems
/// without /proc the exposition has none of them.
public struct ProcessMetrics: Equatable, Sendable {
    public var openFileDescriptors: Int?
    public var maxFileDescriptors: Int?
    public var residentMemoryBytes: Int?
    public var virtualMemoryBytes: Int?
    public var cpuSeconds: Double?
    public var startTimeSeconds: Double?

    public init() {}

    /// This process's figures now (only what could be read).
    public static func current() -> ProcessMetrics {
        #if os(Linux)
        let clockTicks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        return read(
            stat: try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            limits: try? String(contentsOfFile: "/proc/self/limits", encoding: .utf8),
            systemStat: try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            openFileDescriptors: (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map { max(0, $0.count - 1) },
            clockTicksPerSecond: clockTicks, pageSize: pageSize)
        #else
        return ProcessMetrics()
        #endif
    }

    /// Parses the /proc files' text (separate from reading them, for tests). `openFileDescriptors`
    /// is the count of /proc/self/fd less the descriptor that listing it opened.
    package static func read(
        stat: String?, limits: String?, systemStat: String?, openFileDescriptors: Int?, clockTicksPerSecond: Double,
        pageSize: Int
    ) -> ProcessMetrics {
        var metrics = ProcessMetrics()
        metrics.openFileDescriptors = openFileDescriptors
        if let limits {
            for line in limits.split(separator: "\n") where line.hasPrefix("Max open files") {
                // "Max open files            1024                 4096                 files"
                let fields = line.dropFirst("Max open files".count).split(separator: " ")
                if let soft = fields.first { metrics.maxFileDescriptors = Int(soft) }
            }
        }
        // Fields after the command (which is in parentheses and may hold spaces): field 3 is the
        // state; utime and stime are 14 and 15, starttime 22, vsize 23, rss 24 (proc(5)).
        if let stat, let close = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Double? {
                let index = number - 3
                return fields.indices.contains(index) ? Double(fields[index]) : nil
            }
            if let user = field(14), let system = field(15) { metrics.cpuSeconds = (user + system) / clockTicksPerSecond }
            if let vsize = field(23) { metrics.virtualMemoryBytes = Int(vsize) }
            if let rss = field(24) { metrics.residentMemoryBytes = Int(rss) * pageSize }
            if let start = field(22), let systemStat,
               let bootLine = systemStat.split(separator: "\n").first(where: { $0.hasPrefix("btime ") }),
               let bootTime = Double(bootLine.dropFirst("btime ".count).trimmingCharacters(in: .whitespaces)) {
                metrics.startTimeSeconds = bootTime + start / clockTicksPerSecond
            }
        }
        return metrics
    }

    /// The figures in Prometheus text format, with `# HELP` and `# TYPE` lines.
    public var exposition: [UInt8] {
        var text = ""
        func add(_ name: String, _ type: String, _ help: String, _ value: String?) {
            guard let value else { return }
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(value)\n"
        }
        add("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", cpuSeconds.map { "\($0)" })
        add("process_open_fds", "gauge", "Number of open file descriptors.", openFileDescriptors.map { "\($0)" })
        add("process_max_fds", "gauge", "Maximum number of open file descriptors.", maxFileDescriptors.map { "\($0)" })
        add("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", residentMemoryBytes.map { "\($0)" })
        add("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", virtualMemoryBytes.map { "\($0)" })
        add("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
            startTimeSeconds.map { String(format: "%.2f", $0) })
        return Array(text.utf8)
    }
}

extension MetricsHelp {
    /// The broker's exposition: `registry` (swift-prometheus's text) with the `# HELP` lines,
    /// followed by the process metrics read now.
    public static func exposition(_ registry: [UInt8]) -> [UInt8] {
        var text = adding(to: registry)
        if !text.isEmpty, text.last != UInt8(ascii: "\n") { text.append(UInt8(ascii: "\n")) }
        return text + ProcessMetrics.current().exposition
    }
}
