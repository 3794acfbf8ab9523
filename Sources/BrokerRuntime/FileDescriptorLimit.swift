#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// Each WebSocket connection holds a file descriptor, so the broker raises its soft
/// RLIMIT_NOFILE to the hard limit at start-up and logs the figure.
public enum FileDescriptorLimit {
    /// Raises the soft limit to the hard one; returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseToHardLimit(logger: Logger? = nil) -> Int {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return -1 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        logger?.info("open file limit", metadata: ["RLIMIT_NOFILE": "\(limit.rlim_cur)"])
        return Int(limit.rlim_cur)
    }

    /// The WebSocket connections a process with `openFileLimit` descriptors can hold and still
    /// answer `/healthz` and keep its journal open: the limit minus a headroom of 64 plus 5%
    /// (SQLite's database, WAL and reader connections, the listener, the event loops' epoll
    /// and eventfd descriptors, plain HTTP connections). At least 1.
    public static func connectionCap(openFileLimit: Int) -> Int {
        guard openFileLimit > 0 else { return 0 }
        return max(1, openFileLimit - 64 - openFileLimit / 20)
    }
}
