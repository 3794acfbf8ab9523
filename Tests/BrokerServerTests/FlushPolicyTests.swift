import NIOCore
import Testing

@testable import BrokerServer

/// When a loop flushes the connections it wrote to (FlushPolicy.swift), driven by a manual clock:
/// the deadlines are explicit, no loop or socket is involved.
@Suite struct FlushPolicyTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    /// A policy whose last flush took `cost` of small writes, ending at `t0`.
    func afterFlush(costing cost: TimeAmount, maxDelay: TimeAmount = .milliseconds(20)) -> FlushPolicy {
        var policy = FlushPolicy(maxDelay: maxDelay)
        policy.flushed(from: t0 - cost, to: t0, bytesPerConnection: 2_000)
        return policy
    }

    @Test func untouchedPolicyFlushesAtOnce() {
        var policy = FlushPolicy(maxDelay: .milliseconds(20))
        #expect(policy.firstWrite(at: t0, queuedFrames: 0) == .flushNow)
    }

    @Test func cheapFlushesAddNoHold() {
        // 50 µs of flushing (a few writes): a cap of 400 µs is under the shortest step, not taken.
        var policy = afterFlush(costing: .microseconds(50))
        #expect(policy.firstWrite(at: t0, queuedFrames: 0) == .flushNow)
    }

    @Test func holdStepIsWhatTheLastFlushTookAndNoLessThanTheShortest() {
        #expect(afterFlush(costing: .milliseconds(3)).holdStep == .milliseconds(3))
        #expect(afterFlush(costing: .microseconds(100)).holdStep == FlushPolicy.shortestStep)
    }

    @Test func expensiveFlushHoldsTheNextWritesForOneStep() {
        var policy = afterFlush(costing: .milliseconds(1))
        #expect(policy.firstWrite(at: t0 + .milliseconds(2), queuedFrames: 0) == .holdUntil(t0 + .milliseconds(3)))
    }

    @Test func holdEndsAtTheFirstStepWithoutNewFrames() {
        var policy = afterFlush(costing: .milliseconds(1))
        #expect(policy.firstWrite(at: t0, queuedFrames: 0) == .holdUntil(t0 + .milliseconds(1)))
        // The tick that wrote first queued 900 frames for one connection: hold on.
        #expect(policy.holdEnded(at: t0 + .milliseconds(1), queuedFrames: 900, waitingConnections: 1) == .holdUntil(t0 + .milliseconds(2)))
        // Nothing since: the burst is over, long before the cap (8 ms).
        #expect(policy.holdEnded(at: t0 + .milliseconds(2), queuedFrames: 900, waitingConnections: 1) == .flushNow)
    }

    @Test func framesSpreadThinlyOverManyConnectionsEndTheHold() {
        // 500 connections wait: a step that brings 999 frames (many topics, a few subscribers
        // each) saves too few writes to be worth another step; 1,000 (two per connection) is.
        var policy = afterFlush(costing: .milliseconds(1))
        _ = policy.firstWrite(at: t0, queuedFrames: 0)
        #expect(policy.holdEnded(at: t0 + .milliseconds(1), queuedFrames: 1_000, waitingConnections: 500)
            == .holdUntil(t0 + .milliseconds(2)))
        #expect(policy.holdEnded(at: t0 + .milliseconds(2), queuedFrames: 1_999, waitingConnections: 500) == .flushNow)
    }

    @Test func afterAFutileHoldTheNextBurstsAreFlushedWithoutOne() {
        var policy = afterFlush(costing: .milliseconds(1))
        var now = t0
        #expect(policy.firstWrite(at: now, queuedFrames: 0) == .holdUntil(now + .milliseconds(1)))
        // The step brought one frame for 500 waiting connections: futile.
        #expect(policy.holdEnded(at: now + .milliseconds(1), queuedFrames: 1, waitingConnections: 500) == .flushNow)
        for _ in 0..<FlushPolicy.burstsWithoutHoldAfterAFutileOne {
            now = now + .milliseconds(2)
            policy.flushed(from: now - .milliseconds(1), to: now, bytesPerConnection: 2_000)
            #expect(policy.firstWrite(at: now, queuedFrames: 0) == .flushNow)
        }
        // Then a hold is tried again.
        now = now + .milliseconds(2)
        policy.flushed(from: now - .milliseconds(1), to: now, bytesPerConnection: 2_000)
        #expect(policy.firstWrite(at: now, queuedFrames: 0) == .holdUntil(now + .milliseconds(1)))
    }

    @Test func holdThatReachesTheCapIsNotFutile() {
        var policy = afterFlush(costing: .milliseconds(1))
        _ = policy.firstWrite(at: t0, queuedFrames: 0)
        #expect(policy.holdEnded(at: t0 + .milliseconds(8), queuedFrames: 10_000, waitingConnections: 500) == .flushNow)
        let end = t0 + .milliseconds(10)
        policy.flushed(from: t0 + .milliseconds(9), to: end, bytesPerConnection: 2_000)
        #expect(policy.firstWrite(at: end, queuedFrames: 0) == .holdUntil(end + .milliseconds(1)))
    }

    @Test func holdGoesOnWhileFramesKeepComingUpToTheCap() {
        // A sparse but steady stream (a frame every 0.5 ms) against flushes of 2 ms: each step
        // brings frames, so the writes are held to the cap and leave in one flush.
        let cost = TimeAmount.milliseconds(2)
        var policy = afterFlush(costing: cost)
        let cap = t0 + cost * FlushPolicy.holdPerFlushCost
        var now = t0
        var queued = 0
        var decision = policy.firstWrite(at: now, queuedFrames: queued)
        var steps = 0
        while case .holdUntil(let deadline) = decision {
            #expect(deadline > now && deadline <= cap)
            queued += 100 * Int((deadline - now).nanoseconds / 500_000)
            now = deadline
            steps += 1
            decision = policy.holdEnded(at: now, queuedFrames: queued, waitingConnections: 1)
        }
        #expect(now == cap)
        #expect(steps == Int(FlushPolicy.holdPerFlushCost))
    }

    @Test func holdNeverExceedsMaxDelay() {
        var policy = afterFlush(costing: .milliseconds(1), maxDelay: .milliseconds(2) + .microseconds(500))
        #expect(policy.firstWrite(at: t0, queuedFrames: 0) == .holdUntil(t0 + .milliseconds(1)))
        #expect(policy.holdEnded(at: t0 + .milliseconds(1), queuedFrames: 10, waitingConnections: 1) == .holdUntil(t0 + .milliseconds(2)))
        #expect(policy.holdEnded(at: t0 + .milliseconds(2), queuedFrames: 20, waitingConnections: 1)
            == .holdUntil(t0 + .milliseconds(2) + .microseconds(500)))
        #expect(policy.holdEnded(at: t0 + .milliseconds(2) + .microseconds(500), queuedFrames: 30, waitingConnections: 1) == .flushNow)
    }

    @Test func lateTimerEndsTheHoldAtTheCap() {
        // A loop too busy to run the timer on time: past the cap it flushes whatever arrived.
        var policy = afterFlush(costing: .milliseconds(1))
        _ = policy.firstWrite(at: t0, queuedFrames: 0)
        #expect(policy.holdEnded(at: t0 + .milliseconds(30), queuedFrames: 5_000, waitingConnections: 1) == .flushNow)
    }

    @Test func firstWriteLongAfterTheLastFlushIsNotHeld() {
        var policy = afterFlush(costing: .milliseconds(1))
        #expect(policy.firstWrite(at: t0 + .milliseconds(8), queuedFrames: 0) == .flushNow)
    }

    @Test func eachBurstCountsFromItsFirstWrite() {
        var policy = afterFlush(costing: .milliseconds(1))
        _ = policy.firstWrite(at: t0, queuedFrames: 0)
        #expect(policy.holdEnded(at: t0 + .milliseconds(1), queuedFrames: 4_000, waitingConnections: 1) == .holdUntil(t0 + .milliseconds(2)))
        // The flush resets the shard's count to zero; 300 new frames are frames that came, not
        // 3,700 fewer.
        let end = t0 + .milliseconds(3)
        policy.flushed(from: t0 + .milliseconds(2), to: end, bytesPerConnection: 2_000)
        _ = policy.firstWrite(at: end, queuedFrames: 0)
        #expect(policy.holdEnded(at: end + .milliseconds(1), queuedFrames: 300, waitingConnections: 1) == .holdUntil(end + .milliseconds(2)))
    }

    @Test func flushOfLargeWritesAddsNoHold() {
        var policy = FlushPolicy(maxDelay: .milliseconds(20))
        let end = t0 + .milliseconds(4)
        policy.flushed(from: t0, to: end, bytesPerConnection: FlushPolicy.largeWriteBytes)
        #expect(policy.firstWrite(at: end, queuedFrames: 0) == .flushNow)
        // Small writes again: holding resumes.
        policy.flushed(from: end, to: end + .milliseconds(1), bytesPerConnection: FlushPolicy.largeWriteBytes - 1)
        #expect(policy.firstWrite(at: end + .milliseconds(1), queuedFrames: 0) != .flushNow)
    }

    @Test func zeroMaxDelayTurnsHoldingOff() {
        var policy = afterFlush(costing: .milliseconds(50), maxDelay: .zero)
        #expect(policy.firstWrite(at: t0, queuedFrames: 0) == .flushNow)
    }
}
