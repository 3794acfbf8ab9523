import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A child process started with `posix_spawn`, for the tests. Foundation's `Process.run()` on
/// Linux (Swift 6.3.1) sometimes crashes the whole test process: it reads past glibc's readdir
/// buffer while listing /proc/self/fd (swift-corelibs-foundation PR #5472; a full run crashed
/// here once in five). This spawns directly: the child gets `stdin`, `stdout` and `stderr` as
/// descriptors 0-2 and no other descriptor of the test process.
final class SpawnedProcess: Sendable {
    let pid: pid_t
    /// The raw wait status once the child has ended (reaped by `isRunning`).
    private let waitStatus = NIOLockedValueBox<Int32?>(nil)

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    /// glibc ≥ 2.34 has it, but its header declares it only for _GNU_SOURCE, which Swift's
    /// Glibc module does not see.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
            return nil
        }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    private typealias AddChangeDirectory = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    /// glibc ≥ 2.29, declared for _GNU_SOURCE only (as above).
    private static let addChangeDirectory: AddChangeDirectory? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else {
            return nil
        }
        return unsafeBitCast(symbol, to: AddChangeDirectory.self)
    }()

    /// `directory`: the child's working directory (the test process's when nil).
    init(
        path: String, arguments: [String], environment: [String: String], stdin: Int32, stdout: Int32, stderr: Int32,
        directory: String? = nil
    ) throws {
        // A suite that spawns without checking `childProcessesAllowed` fails here, visibly,
        // instead of crashing a ThreadSanitizer run.
        guard childProcessesAllowed else { throw TestFailure("\(path): \(childProcessesOffReason)") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let directory, let addChangeDirectory = Self.addChangeDirectory { _ = addChangeDirectory(&actions, directory) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        if let addCloseFrom = Self.addCloseFrom { _ = addCloseFrom(&actions, 3) }

        let argumentStrings = [path] + arguments
        let environmentStrings = environment.map { "\($0.key)=\($0.value)" }
        var argv: [UnsafeMutablePointer<CChar>?] = argumentStrings.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environmentStrings.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, path, &actions, nil, &argv, &envp)
        guard result == 0 else { throw TestFailure("posix_spawn \(path): \(String(cString: strerror(result)))") }
        self.pid = pid
    }

    /// Whether the child still runs; reaps it (once) when it has ended.
    var isRunning: Bool {
        waitStatus.withLockedValue { status in
            guard status == nil else { return false }
            var raw: Int32 = 0
            let reaped = waitpid(pid, &raw, WNOHANG)
            if reaped == pid { status = raw }
            return status == nil && reaped != -1
        }
    }

    /// Waits (blocking this thread) until the child has ended, at most `timeout`; false if it
    /// still runs then. A thread of its own waits for the exit itself (a blocking `waitpid`), so
    /// nothing polls. For the synchronous harnesses (PostgresServer); async code polls `isRunning`.
    func waitUntilExit(timeout: Duration) -> Bool {
        guard isRunning else { return true }
        let exited = DispatchSemaphore(value: 0)
        let pid = self.pid, waitStatus = self.waitStatus
        Thread.detachNewThread {
            var raw: Int32 = 0
            // -1 (ECHILD) when `isRunning` reaped it first; its status is then already kept.
            if waitpid(pid, &raw, 0) == pid { waitStatus.withLockedValue { $0 = $0 ?? raw } }
            exited.signal()
        }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        return exited.wait(timeout: .now() + seconds) == .success
    }

    /// The exit code when the child exited normally; nil while it runs or when a signal ended it.
    var exitCode: Int32? {
        guard !isRunning, let raw = waitStatus.withLockedValue({ $0 }), raw & 0x7F == 0 else { return nil }
        return (raw >> 8) & 0xFF
    }

    /// The signal that ended the child, if one did.
    var terminatingSignal: Int32? {
        guard !isRunning, let raw = waitStatus.withLockedValue({ $0 }), raw & 0x7F != 0 else { return nil }
        return raw & 0x7F
    }
}
