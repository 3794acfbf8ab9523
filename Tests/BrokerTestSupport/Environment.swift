import Foundation
import Logging
import NIOCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How many times longer than written a test waits before it gives up: 1, unless
/// `BROKER_TEST_TIMEOUT_SCALE` says otherwise (`scripts/sanitize` sets it: the sanitizers slow
/// the broker and its clients 3–15 times). Only give-up bounds and the broker's keepalive in
/// integration tests are scaled; no test decides anything by how long a step took.
package let testTimeoutScale: Double = {
    guard let text = ProcessInfo.processInfo.environment["BROKER_TEST_TIMEOUT_SCALE"], let scale = Double(text), scale >= 1
    else { return 1 }
    return scale
}()

/// Whether tests may start child processes (`broker`, `broker-cli`, PostgreSQL, HAProxy,
/// openssl). `BROKER_TEST_NO_CHILD_PROCESSES=1` turns them off, and `scripts/sanitize thread` sets
/// it: under ThreadSanitizer, a child started from the many-threaded test process (posix_spawn
/// clones, and TSan handles that clone as a fork) can trip TSan's own runtime (`CHECK failed:
/// tsan_rtl.cpp:261 ((!thr->slot)) != (0)` in ForkChildAfter, 2026-12-04), which kills the whole
/// test process. The in-process suites, whose broker runs on the test process's threads where TSan
/// sees them, still run; no test ever read a child's own TSan reports.
package let childProcessesAllowed = ProcessInfo.processInfo.environment["BROKER_TEST_NO_CHILD_PROCESSES"] == nil

/// Why a test that starts child processes is skipped when they are off.
package let childProcessesOffReason =
    "child processes are off in this run (BROKER_TEST_NO_CHILD_PROCESSES, set by scripts/sanitize thread)"

/// A test's time limit in whole minutes (what `.timeLimit` takes), stretched like `patience`:
/// a limit only stops a hang, so under a sanitizer it grows with everything else.
package func patientMinutes(_ minutes: Int) -> Int {
    Int((Double(minutes) * testTimeoutScale).rounded(.up))
}

/// `timeout` stretched by `testTimeoutScale`.
package func patience(_ timeout: Duration) -> Duration {
    timeout * testTimeoutScale
}

/// A logger that only shows warnings and worse.
package func quietLogger(_ label: String) -> Logger {
    var logger = Logger(label: label)
    logger.logLevel = .warning
    return logger
}

/// A fresh directory name under the system's temporary directory (not created).
package func temporaryDirectory(_ prefix: String = "broker-test") -> String {
    NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
}

package func removeDirectory(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}

/// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed again).
package func unusedPort() throws -> Int {
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

/// NIO's connect timeout (10 s by default) for the tests' own clients, stretched like the rest:
/// under TSan on a loaded machine a broker took longer than 10 s to accept.
package var testConnectTimeout: TimeAmount {
    .milliseconds(Int64((10_000 * testTimeoutScale).rounded(.up)))
}
