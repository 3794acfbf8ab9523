import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The worker processes of `connections`: this executable again, each with its share of the
/// connections. Their stdout is read line by line on one thread per worker; writing `report` on
/// a worker's stdin asks for its deliveries now; closing it ends the worker.
final class WorkerProcesses: @unchecked Sendable {
    private var processes: [Process] = []
    private var inputs: [Pipe] = []
    private let lock = NSLock()
    private var lines: [(worker: Int, line: String)] = []

    init(count: Int, connections: Int, arguments: [String]) throws {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var first = 0
        for worker in 0..<count {
            let share = connections / count + (worker < connections % count ? 1 : 0)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments + ["--worker-first", "\(first)", "--worker-count", "\(share)"]
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            processes.append(process)
            inputs.append(input)
            first += share
            let fd = output.fileHandleForReading.fileDescriptor
            Thread { [self] in readLines(fd: fd, worker: worker) }.start()
        }
    }

    private func readLines(fd: Int32, worker: Int) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return }
            pending += chunk[0..<n]
            while let newline = pending.firstIndex(of: 10) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeSubrange(...newline)
                put([(worker, line)])
            }
        }
    }

    private func put(_ more: [(worker: Int, line: String)]) {
        lock.withLock { lines += more }
    }

    private func take() -> [(worker: Int, line: String)] {
        lock.withLock {
            defer { lines.removeAll() }
            return lines
        }
    }

    /// Waits until every worker sent a report of `kind`, or `seconds` passed; one per worker.
    func collect(kind: String, within seconds: Double) async -> [WorkerReport] {
        let deadline = Date().addingTimeInterval(seconds)
        var reports: [Int: WorkerReport] = [:]
        while reports.count < processes.count, Date() < deadline {
            let taken = take()
            for (worker, line) in taken {
                guard let report = try? JSONDecoder().decode(WorkerReport.self, from: Data(line.utf8)) else {
                    print("worker \(worker): \(line)")
                    continue
                }
                if report.kind == kind {
                    reports[worker] = report
                } else {
                    put([(worker, line)])  // keep it for the next collect
                }
            }
            if reports.count < processes.count {
                if processes.allSatisfy({ !$0.isRunning }) { break }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        return reports.sorted { $0.key < $1.key }.map(\.value)
    }

    func requestReports() {
        for input in inputs { try? input.fileHandleForWriting.write(contentsOf: Data("report\n".utf8)) }
    }

    /// Closes the workers' stdin (they exit) and waits for them; SIGKILL after 10 s.
    func stop() {
        for input in inputs { try? input.fileHandleForWriting.close() }
        let deadline = Date().addingTimeInterval(10)
        while processes.contains(where: \.isRunning), Date() < deadline { usleep(50_000) }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
        inputs.removeAll()
    }
}
