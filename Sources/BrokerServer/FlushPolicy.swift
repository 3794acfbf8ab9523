import NIOCore

/// When a loop flushes the connections it wrote to: at the end of the tick, or after holding the
/// writes so that each write syscall carries more frames.
///
/// A flush costs a write syscall per connection, and on a busy loop with small frames those
/// syscalls, not the fan-out, are most of the CPU: kernel TCP work and waking the reader, which
/// cost the same for 100 bytes as for 10 KB. Holding writes pays only while frames keep coming:
/// each one that arrives during the hold joins a write that happens anyway. Once nothing arrives,
/// holding only adds latency, and in a closed loop (publishers that wait for their deliveries)
/// it also stalls the publishers, so nothing more will arrive until the flush.
///
/// So a hold goes on in steps as long as the last flush took, and ends at the first step that
/// brought fewer than `framesPerConnectionToHold` new frames per connection waiting to be flushed:
/// a step that adds less would save at most about one write per connection and cost every
/// waiting frame a step of latency. A loop that saw little arrive for as long as a flush takes
/// has the time to flush; and frames spread thinly (many topics with a few subscribers each)
/// batch about as well without a hold. (A fixed short step would end holds between the frames of a steady stream
/// that is merely sparse, say one publish every 0.5 ms to 1,000 subscribers, and flush it a
/// frame or two at a time, which costs more CPU than the stream has.) A hold never goes past a
/// cap of 8× what the last flush took (a loop that keeps receiving spends about a ninth of its
/// time flushing), nor past `maxDelay`; a loop whose flushes are cheap, or whose writes were
/// already large, does not hold at all.
///
/// Each hold starts with one step taken on trust. When a hold ends because a step brought too
/// few frames, the next `burstsWithoutHoldAfterAFutileOne` bursts are flushed at the end of
/// their tick without that step, so a loop where holding does not pay (many topics with a few
/// subscribers each, in a closed loop) pays for it once in that many bursts, not every time.
///
/// Pure: the shard feeds it the loop's clock, its count of frames queued since the last flush and
/// of connections waiting for it, and acts on the decision (FanoutShard.swift).
package struct FlushPolicy {
    package enum Decision: Equatable {
        /// Flush at the end of this tick.
        case flushNow
        /// Hold the writes; ask again (`holdEnded`) at this deadline.
        case holdUntil(NIODeadline)
    }

    /// The longest a hold may last; zero turns holding off.
    package var maxDelay: TimeAmount
    /// The cap on a hold, in multiples of what the last flush took.
    static let holdPerFlushCost: Int64 = 8
    /// Writes at least this large on average (bytes per flushed connection) need no hold.
    static let largeWriteBytes = 32 * 1024
    /// A hold step must bring at least this many new frames per waiting connection to be followed
    /// by another.
    static let framesPerConnectionToHold = 2
    /// Bursts flushed without a hold after a hold that ended for lack of frames.
    static let burstsWithoutHoldAfterAFutileOne = 8
    /// The shortest hold step. Shorter holds are not taken at all: on a nearly idle loop, where a
    /// flush writes a connection or two, they would only delay request and reply traffic.
    static let shortestStep: TimeAmount = .microseconds(500)

    /// The latest a hold may end: the last flush's end plus its cap.
    private var holdCap = NIODeadline.uptimeNanoseconds(0)
    /// What the last flush took (at least `shortestStep`): a hold goes on while each step of
    /// this length brings frames.
    package private(set) var holdStep = Self.shortestStep
    /// Bursts still to flush without a hold (see `burstsWithoutHoldAfterAFutileOne`).
    private var burstsWithoutHold = 0
    /// Frames queued since the last flush when the policy last looked.
    private var queuedAtLastLook = 0

    package init(maxDelay: TimeAmount) {
        self.maxDelay = maxDelay
    }

    /// A flush ran from `start` to `end`, writing `bytesPerConnection` on average.
    package mutating func flushed(from start: NIODeadline, to end: NIODeadline, bytesPerConnection: Int) {
        queuedAtLastLook = 0
        holdStep = max(Self.shortestStep, end - start)
        guard bytesPerConnection < Self.largeWriteBytes else {
            holdCap = end
            return
        }
        holdCap = end + min(maxDelay, (end - start) * Self.holdPerFlushCost)
    }

    /// The first write since the last flush happened at `now`, with `queuedFrames` queued since.
    package mutating func firstWrite(at now: NIODeadline, queuedFrames: Int) -> Decision {
        queuedAtLastLook = queuedFrames
        guard holdCap - now >= Self.shortestStep else { return .flushNow }
        guard burstsWithoutHold == 0 else {
            burstsWithoutHold -= 1
            return .flushNow
        }
        return .holdUntil(min(now + holdStep, holdCap))
    }

    /// A hold's deadline came at `now`, with `queuedFrames` queued since the last flush for
    /// `waitingConnections`: hold one more step if this one brought enough frames and the cap
    /// allows.
    package mutating func holdEnded(at now: NIODeadline, queuedFrames: Int, waitingConnections: Int) -> Decision {
        let arrived = queuedFrames - queuedAtLastLook
        queuedAtLastLook = queuedFrames
        guard now < holdCap else { return .flushNow }
        guard arrived > 0, arrived >= Self.framesPerConnectionToHold * waitingConnections else {
            burstsWithoutHold = Self.burstsWithoutHoldAfterAFutileOne
            return .flushNow
        }
        return .holdUntil(min(now + holdStep, holdCap))
    }
}
