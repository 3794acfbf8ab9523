import Logging
import ServiceLifecycle

#if os(Linux)
/// glibc's `int malloc_trim(size_t pad)` (malloc.h, which the Glibc module does not export).
@_silgen_name("malloc_trim")
private func mallocTrim(_ pad: Int) -> Int32
#endif

/// When to hand memory that was freed back to the operating system.
///
/// glibc's allocator keeps freed memory in its arenas for reuse. After many connections close,
/// the broker's RSS stays at its peak although nothing uses it: a churn of 10,000 connections
/// left 96 MiB against a 38 MiB baseline (a second and third churn added nothing: it is kept,
/// not leaked), and `malloc_trim(0)` brought it to 42 MiB. Trimming walks every arena under its
/// lock, so it is done only after the number of open connections fell well below its peak.
public struct MemoryTrimPolicy: Sendable {
    /// Trim once at least this many connections closed since the last trim...
    public var minimumClosed: Int
    /// ...and they were at least this share of the connections that were open since then (so
    /// that a busy broker losing a few clients does not trim every interval).
    public var minimumShare: Double

    private var closedAtLastTrim = 0

    public init(minimumClosed: Int = 100, minimumShare: Double = 0.1) {
        self.minimumClosed = minimumClosed
        self.minimumShare = minimumShare
    }

    /// Reports the connections open now and closed since start; true when it is time to trim.
    /// Counting closes, not sampling the open count, sees a wave of connections that came and
    /// went between two looks.
    public mutating func shouldTrim(open: Int, closed: Int) -> Bool {
        let gone = closed - closedAtLastTrim
        guard gone >= minimumClosed, Double(gone) >= minimumShare * Double(gone + open) else { return false }
        closedAtLastTrim = closed
        return true
    }
}

/// Checks every `interval` whether connections have gone since the last look and, if
/// `MemoryTrimPolicy` says so, returns freed memory to the system (a swift-service-lifecycle
/// service; off the event loops). Does nothing off Linux.
public struct MemoryReclaimer: Service, Sendable {
    let server: BrokerServer
    let interval: Duration
    let logger: Logger

    public init(server: BrokerServer, interval: Duration = .seconds(10), logger: Logger) {
        self.server = server
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try? await cancelWhenGracefulShutdown {
            var policy = MemoryTrimPolicy()
            while !Task.isCancelled {
                try await Task.sleep(for: interval)
                let counts = await server.connectionCounts()
                if policy.shouldTrim(open: counts.open, closed: counts.closed) {
                    Self.returnFreedMemory()
                    logger.debug("returned freed memory to the system", metadata: ["openConnections": "\(counts.open)"])
                }
            }
        }
    }

    static func returnFreedMemory() {
        #if os(Linux)
        _ = mallocTrim(0)
        #endif
    }
}
