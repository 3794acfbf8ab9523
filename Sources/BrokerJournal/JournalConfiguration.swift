/// How hard a commit tries to reach stable storage before appends are acknowledged.
public enum JournalDurability: Sendable, Equatable {
    /// WAL with `synchronous=NORMAL`: a commit is in the operating system's hands when the append
    /// completes, so every acknowledged message survives a crash or `kill -9` of the broker
    /// process. A power loss or kernel crash may lose the most recent commits (never corrupting the
    /// journal: SQLite rolls back to the last synced checkpoint of the WAL).
    case normal
    /// WAL with `synchronous=FULL`: every commit is `fsync`ed before its appends complete, so every
    /// acknowledged message also survives a power loss. Slower: one fsync per group commit.
    case full
}

/// Settings of a `SQLiteJournal`. Every default is meant to keep a small machine safe.
public struct JournalConfiguration: Sendable {
    /// Default `.normal`: survives a kill of the process, not necessarily a power loss.
    public var durability: JournalDurability
    /// What retention keeps; see `RetentionPolicy` for its defaults.
    public var retention: RetentionPolicy
    /// Most appends committed in one transaction (default 2,048). Everything pending, up to this
    /// many, goes into one group commit.
    public var maxBatchSize: Int
    /// Least time between two background retention passes while appends keep coming
    /// (default 100 ms). An idle journal runs a pass about once a second so age limits apply.
    public var pruneInterval: Duration
    /// The wall clock in milliseconds since 1970, used for timestamps and age retention.
    /// Replace it only in tests.
    public var clock: @Sendable () -> Int64

    public init(
        durability: JournalDurability = .normal,
        retention: RetentionPolicy = RetentionPolicy(),
        maxBatchSize: Int = 2_048,
        pruneInterval: Duration = .milliseconds(100),
        clock: @escaping @Sendable () -> Int64 = JournalConfiguration.systemClock
    ) {
        self.durability = durability
        self.retention = retention
        self.maxBatchSize = max(1, maxBatchSize)
        self.pruneInterval = pruneInterval
        self.clock = clock
    }

    /// Milliseconds since 1970 from the system's real-time clock.
    @Sendable public static func systemClock() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
