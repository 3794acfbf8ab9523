import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// How a command run to its end finished: its exit code (nil when a signal ended it) and what it
/// wrote to stdout and stderr together.
package struct CommandResult: Sendable {
    package let exitCode: Int32?
    package let output: String
}

/// Runs `command` (an absolute path first; `/usr/bin/env` for a PATH lookup) to its end, stdin
/// from /dev/null, blocking this thread; kills it after `timeout`. Spawned with `posix_spawn`
/// (`SpawnedProcess`), never Foundation's `Process`.
func runToEnd(_ command: [String], directory: String? = nil, timeout: Duration = .seconds(300)) throws -> CommandResult {
    // A file, not a pipe: nothing has to drain it while the command runs.
    let outputPath = NSTemporaryDirectory() + "broker-command-\(UUID().uuidString).out"
    let output = open(outputPath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard output >= 0 else { throw TestFailure("cannot open \(outputPath)") }
    defer {
        close(output)
        unlink(outputPath)
    }
    let process = try spawnInBackground(command, output: output, directory: directory)
    guard process.waitUntilExit(timeout: timeout) else {
        kill(process.pid, SIGKILL)
        _ = process.waitUntilExit(timeout: .seconds(10))
        throw TestFailure("\(command.joined(separator: " ")) did not end within \(timeout)")
    }
    return CommandResult(exitCode: process.exitCode, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
}

/// `runToEnd` without holding one of Swift's cooperative threads (two on this machine) while the
/// command runs: that wait would stall every other test of the process.
package func runCommand(_ command: [String], timeout: Duration = .seconds(300)) async throws -> CommandResult {
    try await offCooperativePool { try runToEnd(command, timeout: timeout) }
}

/// Starts `command` and returns at once: stdin from /dev/null, stdout and stderr to `output`
/// (/dev/null when nil).
func spawnInBackground(_ command: [String], output: Int32? = nil, directory: String? = nil) throws -> SpawnedProcess {
    let null = open("/dev/null", O_RDWR | O_CLOEXEC)
    defer { close(null) }
    return try SpawnedProcess(
        path: command[0], arguments: Array(command.dropFirst()), environment: ProcessInfo.processInfo.environment,
        stdin: null, stdout: output ?? null, stderr: output ?? null, directory: directory)
}

/// A long-running helper program of a test (a load balancer): started with `start`, ended with
/// `stop`.
package final class BackgroundCommand: Sendable {
    private let process: SpawnedProcess

    package init(_ command: [String]) throws {
        process = try spawnInBackground(command)
    }

    package var isRunning: Bool { process.isRunning }

    /// SIGTERM, then waits for the exit (SIGKILL after 30 s). Blocks: for `defer` blocks, with
    /// programs that end at once on SIGTERM.
    package func stop() {
        if process.isRunning { kill(process.pid, SIGTERM) }
        if !process.waitUntilExit(timeout: .seconds(30)) {
            kill(process.pid, SIGKILL)
            _ = process.waitUntilExit(timeout: .seconds(10))
        }
    }
}

/// Runs blocking `body` on a thread of its own (see `runCommand`).
func offCooperativePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (done: CheckedContinuation<T, any Error>) in
        Thread.detachNewThread { done.resume(with: Result { try body() }) }
    }
}
