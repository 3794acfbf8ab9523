import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The package's built executables (`broker`, `broker-cli`): next to the test bundle.
enum Products {
    static let directory: URL? = {
        let fm = FileManager.default
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL
        let candidates = [
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
            executable.deletingLastPathComponent(),
            // macOS: <dir>/swift-brokerPackageTests.xctest/Contents/MacOS/<exe>
            executable.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent(),
            packageRoot.appendingPathComponent(".build/debug"),
        ]
        return candidates.first { dir in
            fm.isExecutableFile(atPath: dir.appendingPathComponent("broker-cli").path)
                && fm.isExecutableFile(atPath: dir.appendingPathComponent("broker").path)
        }
    }()

    static func url(_ name: String) throws -> URL {
        guard let directory else {
            throw TestFailure("cannot find the built `broker` and `broker-cli` next to the test bundle \(Bundle.main.bundleURL.path)")
        }
        return directory.appendingPathComponent(name)
    }
}

/// A subprocess whose stdout and stderr are captured as they arrive.
final class ChildProcess: @unchecked Sendable {
    private let process = Process()
    private let stdinPipe = Pipe()
    private let output = NIOLockedValueBox<(out: Data, err: Data, eofs: Int)>((Data(), Data(), 0))
    let name: String

    init(_ executable: String, _ arguments: [String]) throws {
        name = ([executable] + arguments).joined(separator: " ")
        process.executableURL = try Products.url(executable)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["BROKER_URL"] = nil
        process.environment = environment
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdinPipe
        try process.run()
        startReading(out.fileHandleForReading, isStdout: true)
        startReading(err.fileHandleForReading, isStdout: false)
    }

    private func startReading(_ handle: FileHandle, isStdout: Bool) {
        let output = self.output
        let thread = Thread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                output.withLockedValue { if isStdout { $0.out.append(chunk) } else { $0.err.append(chunk) } }
            }
            output.withLockedValue { $0.eofs += 1 }
        }
        thread.start()
    }

    var stdout: String { output.withLockedValue { String(decoding: $0.out, as: UTF8.self) } }
    var stderr: String { output.withLockedValue { String(decoding: $0.err, as: UTF8.self) } }
    /// Complete stdout lines so far.
    var stdoutLines: [String] {
        let text = stdout
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the unfinished tail (empty when the text ends with a newline)
        return lines
    }

    var isRunning: Bool { process.isRunning }
    var pid: Int32 { process.processIdentifier }

    func writeStdin(_ text: String) {
        stdinPipe.fileHandleForWriting.write(Data(text.utf8))
    }

    func closeStdin() {
        try? stdinPipe.fileHandleForWriting.close()
    }

    /// SIGINT, as Ctrl-C would.
    func interrupt() {
        if process.isRunning { kill(process.processIdentifier, SIGINT) }
    }

    /// SIGKILL if still running (cleanup after a failed test).
    func killNow() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits for the process to exit and its output to be read; returns its exit status. Kills it
    /// and throws if it is still running after `timeout`.
    func waitForExit(timeout: Duration = .seconds(6)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning || output.withLockedValue({ $0.eofs < 2 }) {
            if ContinuousClock.now >= deadline {
                killNow()
                throw TestFailure("`\(name)` did not exit within \(timeout); stdout: \(stdout) stderr: \(stderr)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard process.terminationReason == .exit else {
            throw TestFailure("`\(name)` died of signal \(process.terminationStatus); stderr: \(stderr)")
        }
        return process.terminationStatus
    }

    /// Waits until stdout has a line satisfying `predicate`.
    @discardableResult
    func waitForLine(timeout: Duration = .seconds(5), _ what: String, _ predicate: (String) -> Bool) async throws -> String {
        var found: String?
        try await eventually("`\(name)` to print \(what); stdout: \(stdout) stderr: \(stderr)", timeout: timeout) {
            found = stdoutLines.first(where: predicate)
            return found != nil
        }
        return found!
    }

    deinit { killNow() }
}

/// `broker serve --port 0` in a subprocess, on a fresh data directory.
struct BrokerProcess {
    let child: ChildProcess
    let port: Int
    let dataDirectory: String
    var url: String { "ws://127.0.0.1:\(port)/ws" }

    static func start(_ extraArguments: [String] = []) async throws -> BrokerProcess {
        let directory = temporaryDirectory("broker-cli-test")
        let child = try ChildProcess(
            "broker", ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory] + extraArguments)
        var port: Int?
        // The bound port is only in the log line `... address=[IPv4]127.0.0.1/127.0.0.1:PORT ... listening`.
        try await eventually("the broker to log its address; stderr: \(child.stderr)", timeout: .seconds(8)) {
            if !child.isRunning { throw TestFailure("the broker exited: \(child.stderr)") }
            port = parsePort(child.stderr)
            return port != nil
        }
        return BrokerProcess(child: child, port: port!, dataDirectory: directory)
    }

    static func parsePort(_ log: String) -> Int? {
        for line in log.split(separator: "\n") where line.contains("listening") {
            guard let range = line.range(of: "address=") else { continue }
            let address = line[range.upperBound...].prefix { $0 != " " }
            if let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) { return port }
        }
        return nil
    }

    /// SIGINT, wait for a clean exit, remove the data directory. Returns the exit status.
    @discardableResult
    func stop() async throws -> Int32 {
        defer { removeDirectory(dataDirectory) }
        child.interrupt()
        return try await child.waitForExit(timeout: .seconds(8))
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed again).
func unusedPort() throws -> Int {
    #if canImport(Glibc) || canImport(Musl)
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    #else
    let fd = socket(AF_INET, SOCK_STREAM, 0)
    #endif
    guard fd >= 0 else { throw TestFailure("socket() failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = 0
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw TestFailure("bind() failed") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let named = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    guard named == 0 else { throw TestFailure("getsockname() failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}
