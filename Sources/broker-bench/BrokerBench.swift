import ArgumentParser
import Foundation
import NIOCore
import NIOPosix

@main
struct BrokerBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker-bench",
        abstract: "Load generator for the broker: retained publish/ack/replay throughput, fan-out latency, memory per connection, routing over many topics and wildcards.",
        discussion: """
            Every connection of a run lives on one NIO event loop thread (no task per message), so the \
            tool uses at most one core and leaves the rest to the broker (`connections` spreads its \
            connections over worker processes, one event loop each, to stay under the open-file limit).
            """,
        subcommands: [Retained.self, Fanout.self, Connections.self, Routing.self])
}

/// Options shared by the subcommands.
struct CommonOptions: ParsableArguments {
    @Option(help: "Broker WebSocket URL (ws:// only).")
    var url = "ws://127.0.0.1:8080/ws"

    @Option(help: "Payload size in bytes (text: the JSON `data` value, quotes included).")
    var size = 64

    @Flag(help: "Publish binary frames instead of JSON text.")
    var binary = false

    @Option(help: "Broker process id: report its RSS (VmRSS, VmHWM from /proc/PID/status).")
    var pid: Int32?

    @Option(help: "Give up after this many seconds.")
    var timeout: Double = 300

    func parsedURL() throws -> BenchURL {
        guard let url = BenchURL(url) else { throw ValidationError("--url must look like ws://host:port/path") }
        return url
    }
}

/// The closed loop that `fanout` and `routing` share: how long to publish, how much may be in
/// flight, how long to wait for the rest.
struct ClosedLoopOptions: ParsableArguments {
    @Option(help: "Seconds of publishing.")
    var duration: Double = 10

    @Option(help: "Messages x fan-out in flight (published, not yet received); default 65536/size clamped to 8...1000.")
    var window: Int?

    @Option(help: "Seconds to wait for outstanding deliveries after publishing stops.")
    var drain: Double = 5

    /// `--window`, or 64 KiB of payload per subscriber (wsbench's rule), 8 to 1,000 messages.
    func window(size: Int) -> Int {
        window ?? min(1_000, max(8, 65_536 / size))
    }
}

enum Report {
    static func header(_ title: String) {
        print("== broker-bench \(title) ==")
        print("command: " + CommandLine.arguments.map(quote).joined(separator: " "))
        print("machine: \(machine())")
        print("date:    \(ISO8601DateFormatter().string(from: Date()))")
    }

    static func quote(_ argument: String) -> String {
        argument.contains(where: { " '\"#*?$".contains($0) }) ? "'\(argument)'" : argument
    }

    static func machine() -> String {
        let cores = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        var model = "unknown CPU"
        if let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = info.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
            let colon = line.firstIndex(of: ":") {
            model = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var kernel = ""
        var name = utsname()
        if uname(&name) == 0 {
            kernel = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        }
        return "nproc \(cores), \(model), Linux \(kernel)"
    }

    /// VmRSS and VmHWM of a process, in KiB.
    static func memory(pid: Int32) -> (rss: Int, hwm: Int)? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        func field(_ name: String) -> Int? {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        guard let rss = field("VmRSS"), let hwm = field("VmHWM") else { return nil }
        return (rss, hwm)
    }

    /// CPU time (user + system) a process has used, in seconds, from /proc/PID/stat.
    static func cpuSeconds(pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")  // the command name may hold spaces
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU time (user + system) this process has used, in seconds.
    static func selfCPUSeconds() -> Double {
        var usage = rusage()
        #if os(Linux)
        let who = __rusage_who_t(RUSAGE_SELF.rawValue)
        #else
        let who = RUSAGE_SELF
        #endif
        guard getrusage(who, &usage) == 0 else { return 0 }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    static func mib(_ kib: Int) -> String { String(format: "%.1f MiB", Double(kib) / 1024) }

    static func rate(_ value: Double) -> String {
        let formatter = NumberFormatter()
        formatter.numberStyle = .decimal
        formatter.maximumFractionDigits = 0
        return formatter.string(from: NSNumber(value: value.rounded())) ?? "\(Int(value))"
    }

    static func ms(_ value: Double) -> String { String(format: "%.3f", value) }
}

/// A random tag that keeps one run's topics apart from every other run's.
func runTag() -> String {
    String(UInt32.random(in: 0x1000_0000 ... .max), radix: 36)
}

/// A text payload: a JSON string of exactly `size` bytes, quotes included.
func textPayload(size: Int) -> [UInt8] {
    [34] + [UInt8](repeating: UInt8(ascii: "x"), count: max(0, size - 2)) + [34]
}
