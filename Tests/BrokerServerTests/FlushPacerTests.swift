import NIOCore
import Testing

@testable import BrokerServer

/// How long a loop waits before flushing again (FlushPacer.swift), on explicit deadlines.
@Suite struct FlushPacerTests {
    let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func untouchedPacerFlushesAtOnce() {
        let pacer = FlushPacer(maxDelay: .milliseconds(20))
        #expect(pacer.wait(at: t0) == .zero)
    }

    @Test func cheapFlushesAddNoWait() {
        var pacer = FlushPacer(maxDelay: .milliseconds(20))
        // 50 µs of flushing (a few writes): a pause of 400 µs is not taken.
        pacer.flushed(from: t0, to: t0 + .microseconds(50), bytesPerConnection: 200)
        #expect(pacer.wait(at: t0 + .microseconds(50)) == .zero)
    }

    @Test func expensiveFlushOfSmallWritesPausesInProportion() {
        var pacer = FlushPacer(maxDelay: .milliseconds(20))
        let end = t0 + .milliseconds(1)
        pacer.flushed(from: t0, to: end, bytesPerConnection: 2_000)
        let pause = TimeAmount.milliseconds(FlushPacer.pausePerFlushCost)
        #expect(pacer.wait(at: end) == pause)
        #expect(pacer.wait(at: end + .milliseconds(3)) == pause - .milliseconds(3))
        #expect(pacer.wait(at: end + pause) == .zero)
        #expect(pacer.wait(at: end + pause + .seconds(1)) == .zero)
    }

    @Test func pauseNeverExceedsMaxDelay() {
        var pacer = FlushPacer(maxDelay: .milliseconds(5))
        let end = t0 + .milliseconds(40)
        pacer.flushed(from: t0, to: end, bytesPerConnection: 100)
        #expect(pacer.wait(at: end) == .milliseconds(5))
    }

    @Test func flushOfLargeWritesAddsNoPause() {
        var pacer = FlushPacer(maxDelay: .milliseconds(20))
        let end = t0 + .milliseconds(4)
        pacer.flushed(from: t0, to: end, bytesPerConnection: FlushPacer.largeWriteBytes)
        #expect(pacer.wait(at: end) == .zero)
        // Small writes again: pacing resumes.
        pacer.flushed(from: end, to: end + .milliseconds(1), bytesPerConnection: FlushPacer.largeWriteBytes - 1)
        #expect(pacer.wait(at: end + .milliseconds(1)) > .zero)
    }

    @Test func zeroMaxDelayTurnsPacingOff() {
        var pacer = FlushPacer(maxDelay: .zero)
        pacer.flushed(from: t0, to: t0 + .milliseconds(50), bytesPerConnection: 100)
        #expect(pacer.wait(at: t0 + .milliseconds(50)) == .zero)
    }
}
