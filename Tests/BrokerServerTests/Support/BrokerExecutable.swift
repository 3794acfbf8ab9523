import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// The built `broker` executable run as a subprocess (lifecycle tests: signals, exit codes).
final class BrokerExecutable: @unchecked Sendable {
    private let process = Process()
    private let errors = NIOLockedValueBox(Data())
    private let output = NIOLockedValueBox(Data())

    /// `.build/debug/broker` (or wherever the test bundle was built).
    static var path: String? {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        let candidates = [
            Bundle.main.bundleURL, Bundle.main.bundleURL.deletingLastPathComponent(),
            URL(fileURLWithPath: CommandLine.arguments.first ?? "").standardizedFileURL.deletingLastPathComponent(),
            root.appendingPathComponent(".build/debug"),
        ]
        return candidates.map { $0.appendingPathComponent("broker").path }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        guard let path = Self.path else { throw RawWebSocketClient.ClientError.handshake("no built broker executable") }
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("BROKER_") }
            .merging(environment) { $1 }
        let err = Pipe()
        let out = Pipe()
        process.standardError = err
        process.standardOutput = out
        try process.run()
        let errors = self.errors
        err.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil } else { errors.withLockedValue { $0.append(data) } }
        }
        let output = self.output
        out.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil } else { output.withLockedValue { $0.append(data) } }
        }
    }

    var stderr: String { errors.withLockedValue { String(decoding: $0, as: UTF8.self) } }
    var stdout: String { output.withLockedValue { String(decoding: $0, as: UTF8.self) } }
    var isRunning: Bool { process.isRunning }

    /// The port from the `listening` log line.
    func port(timeout: Duration = .seconds(15)) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            for line in stderr.split(separator: "\n") where line.contains("listening") {
                guard let range = line.range(of: "address=") else { continue }
                let address = line[range.upperBound...].prefix { $0 != " " }
                if let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) { return port }
            }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw RawWebSocketClient.ClientError.handshake("the broker did not start: \(stderr)")
    }

    func signal(_ number: Int32) {
        if process.isRunning { kill(process.processIdentifier, number) }
    }

    /// The exit status, or nil when it is still running after `timeout` (then it is killed).
    func waitForExit(timeout: Duration) async throws -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                kill(process.processIdentifier, SIGKILL)
                return nil
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return process.terminationStatus
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
}
