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
package enum Products {
    static let candidates: [URL] = {
        // <package>/Tests/BrokerTestSupport/ChildProcess.swift
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL
        return [
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
            executable.deletingLastPathComponent(),
            // macOS: <dir>/swift-brokerPackageTests.xctest/Contents/MacOS/<exe>
            executable.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent(),
            packageRoot.appendingPathComponent(".build/debug"),
        ]
    }()

    /// The built executable `name`, from the first place that has it.
    package static func url(_ name: String) throws -> URL {
        let found = candidates.map { $0.appendingPathComponent(name) }.first {
            FileManager.default.isExecutableFile(atPath: $0.path)
        }
        guard let found else {
            throw TestFailure("cannot find the built `\(name)` next to the test bundle \(Bundle.main.bundleURL.path)")
        }
        return found
    }
}

/// One of the package's built executables run as a subprocess, its stdout and stderr captured
/// as they arrive. The environment is the test's without any `BROKER_*` variable, plus
/// `environment`.
package final class ChildProcess: @unchecked Sendable {
    private let process: SpawnedProcess
    private let stdinPipe = Pipe()
    private let output = NIOLockedValueBox<(out: Data, err: Data, eofs: Int, outLines: Int)>((Data(), Data(), 0, 0))
    package let name: String

    package init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        name = ([executable] + arguments).joined(separator: " ")
        let path = try Products.url(executable).path
        // A child broker treats the test's readers as TestBroker does: never a slow consumer
        // because the machine starved them, nor dead because they did not read for a while (a
        // test client answers pings only when it reads), nor idle between connecting and sending
        // its request, and stops without a lame-duck window. A test's `environment` overrides these.
        let testDefaults = [
            "BROKER_SLOW_CONSUMER_TIMEOUT": "\(600 * testTimeoutScale)", "BROKER_MAX_OUTBOUND_BYTES": "256MiB",
            "BROKER_PING_INTERVAL": "\(600 * testTimeoutScale)", "BROKER_PONG_TIMEOUT": "\(10 * testTimeoutScale)",
            "BROKER_HTTP_IDLE_TIMEOUT": "\(600 * testTimeoutScale)",
            // A stop closes every client at once (ProcessLameDuckTests sets its own window).
            "BROKER_LAME_DUCK_DURATION": "0",
        ]
        let childEnvironment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BROKER_") }
            .merging(testDefaults) { $1 }.merging(environment) { $1 }
        let out = Pipe()
        let err = Pipe()
        process = try SpawnedProcess(
            path: path, arguments: arguments, environment: childEnvironment,
            stdin: stdinPipe.fileHandleForReading.fileDescriptor, stdout: out.fileHandleForWriting.fileDescriptor,
            stderr: err.fileHandleForWriting.fileDescriptor)
        // The child has its own copies: without closing ours, its output would never reach EOF.
        try? stdinPipe.fileHandleForReading.close()
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()
        startReading(out.fileHandleForReading, isStdout: true)
        startReading(err.fileHandleForReading, isStdout: false)
    }

    private func startReading(_ handle: FileHandle, isStdout: Bool) {
        let output = self.output
        let thread = Thread {
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                let newlines = isStdout ? chunk.reduce(0) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 } : 0
                output.withLockedValue {
                    if isStdout {
                        $0.out.append(chunk)
                        $0.outLines += newlines
                    } else {
                        $0.err.append(chunk)
                    }
                }
            }
            output.withLockedValue { $0.eofs += 1 }
        }
        thread.start()
    }

    package var stdout: String { output.withLockedValue { String(decoding: $0.out, as: UTF8.self) } }
    package var stderr: String { output.withLockedValue { String(decoding: $0.err, as: UTF8.self) } }
    /// Complete stdout lines so far.
    package var stdoutLines: [String] {
        let text = stdout
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the unfinished tail (empty when the text ends with a newline)
        return lines
    }

    /// How many complete stdout lines arrived so far (counted as they arrive: cheap to poll).
    package var stdoutLineCount: Int { output.withLockedValue { $0.outLines } }

    package var isRunning: Bool { process.isRunning }
    package var pid: Int32 { process.pid }

    package func writeStdin(_ text: String) {
        stdinPipe.fileHandleForWriting.write(Data(text.utf8))
    }

    package func closeStdin() {
        try? stdinPipe.fileHandleForWriting.close()
    }

    /// Sends `number` (SIGTERM, SIGINT...) if it is still running.
    package func signal(_ number: Int32) {
        if process.isRunning { kill(process.pid, number) }
    }

    /// SIGINT, as Ctrl-C would.
    package func interrupt() { signal(SIGINT) }

    /// SIGKILL if still running (cleanup after a failed test).
    package func killNow() { signal(SIGKILL) }

    /// Waits for the process to exit and its output to be read; returns its exit status. Kills it
    /// and throws if it is still running after `timeout`; throws if a signal ended it.
    package func waitForExit(timeout: Duration = .seconds(6)) async throws -> Int32 {
        let timeout = patience(timeout)
        let deadline = ContinuousClock.now + timeout
        while process.isRunning || output.withLockedValue({ $0.eofs < 2 }) {
            if ContinuousClock.now >= deadline {
                killNow()
                throw TestFailure("`\(name)` did not exit within \(timeout); stdout: \(stdout) stderr: \(stderr)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        guard let code = process.exitCode else {
            throw TestFailure("`\(name)` died of signal \(process.terminatingSignal ?? 0); stderr: \(stderr)")
        }
        return code
    }

    /// Waits until stdout has a line satisfying `predicate`.
    @discardableResult
    package func waitForLine(timeout: Duration = .seconds(5), _ what: String, _ predicate: (String) -> Bool) async throws -> String {
        var found: String?
        try await eventually("`\(name)` to print \(what); stdout: \(stdout) stderr: \(stderr)", timeout: timeout) {
            found = stdoutLines.first(where: predicate)
            return found != nil
        }
        return found!
    }

    /// The port a `broker serve` child logged in its text `listening` line
    /// (`... address=[IPv4]127.0.0.1/127.0.0.1:PORT ... listening`); throws if it exits first.
    package func listeningPort(timeout: Duration = .seconds(15)) async throws -> Int {
        var port: Int?
        try await eventually("`\(name)` to log its address; stderr: \(stderr)", timeout: timeout) {
            port = Self.parsePort(stderr)
            if port == nil, !isRunning { throw TestFailure("`\(name)` exited: \(stderr)") }
            return port != nil
        }
        return port!
    }

    static func parsePort(_ log: String) -> Int? {
        for line in log.split(separator: "\n") where line.contains("listening") {
            guard let range = line.range(of: "address=") else { continue }
            let address = line[range.upperBound...].prefix { $0 != " " }
            if let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) { return port }
        }
        return nil
    }

    deinit { killNow() }
}

/// `broker serve --port 0` in a subprocess, on a fresh data directory.
package struct BrokerProcess {
    package let child: ChildProcess
    package let port: Int
    package let dataDirectory: String
    package var url: String { "ws://127.0.0.1:\(port)/ws" }

    package static func start(_ extraArguments: [String] = []) async throws -> BrokerProcess {
        let directory = temporaryDirectory("broker-cli-test")
        let child = try ChildProcess(
            "broker", ["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory] + extraArguments)
        let port = try await child.listeningPort(timeout: .seconds(8))
        return BrokerProcess(child: child, port: port, dataDirectory: directory)
    }

    /// SIGINT, wait for a clean exit, remove the data directory. Returns the exit status.
    @discardableResult
    package func stop() async throws -> Int32 {
        defer { removeDirectory(dataDirectory) }
        child.interrupt()
        return try await child.waitForExit(timeout: .seconds(8))
    }
}
