import NIOCore

/// When a loop may flush its written connections again.
///
/// A flush costs a write syscall per connection, and on a busy loop with small frames those
/// syscalls, not the fan-out, are most of the CPU: mostly kernel TCP work and waking the reader,
/// which cost the same for 100 bytes as for 10 KB. Flushing after every tick sends each
/// subscriber a few frames per syscall; pausing a little lets more publishes arrive, so each
/// syscall carries more frames, and the reader wakes less often too.
///
/// The pause is proportional to what the last flush took, so a lightly loaded loop (cheap
/// flushes) still flushes every tick and adds no latency, while a loop that spends milliseconds
/// flushing spends at most a ninth of its time doing so. There is no pause after flushes whose
/// writes were already large: batching more would save little. `maxDelay` bounds the latency
/// this adds; zero turns pacing off.
struct FlushPacer {
    var maxDelay: TimeAmount
    /// The pause after a flush, in multiples of what the flush took.
    static let pausePerFlushCost: Int64 = 8
    /// Writes at least this large on average (bytes per flushed connection) need no pause.
    static let largeWriteBytes = 32 * 1024
    /// Shorter pauses are not taken (the flush runs at the end of the tick): on a nearly idle
    /// loop, where one flush writes a connection or two, they would only delay request and
    /// reply traffic.
    static let shortestWait: TimeAmount = .microseconds(500)

    private var earliestNextFlush = NIODeadline.uptimeNanoseconds(0)

    init(maxDelay: TimeAmount) {
        self.maxDelay = maxDelay
    }

    /// A flush ran from `start` to `end`, writing `bytesPerConnection` on average.
    mutating func flushed(from start: NIODeadline, to end: NIODeadline, bytesPerConnection: Int) {
        guard bytesPerConnection < Self.largeWriteBytes else {
            earliestNextFlush = end
            return
        }
        earliestNextFlush = end + min(maxDelay, (end - start) * Self.pausePerFlushCost)
    }

    /// How long a flush requested at `now` waits; zero means at the end of this tick.
    func wait(at now: NIODeadline) -> TimeAmount {
        let wait = earliestNextFlush - now
        return wait < Self.shortestWait ? .zero : wait
    }
}
