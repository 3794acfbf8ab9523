import Benchmark
import BrokerServer
import NIOCore

// The flush policy's decisions (BrokerServer `FlushPolicy`), which a busy loop makes once per
// burst and once per hold step: they must stay a few nanoseconds and allocate nothing. The clock
// is manual (explicit deadlines), as in the unit tests. Every benchmark runs 1,000 decisions per
// iteration (`scalingFactor: .kilo`): figures are per decision.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let step = TimeAmount.microseconds(500)

    // A saturated loop: each flush took 1 ms, frames keep coming, so every burst is held to the
    // cap in steps. One operation: one decision (a first write, a hold step, or a flush's record).
    Benchmark("Hold while frames keep coming (first write, steps, flush)") { benchmark in
        var policy = FlushPolicy(maxDelay: .milliseconds(20))
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        policy.flushed(from: now - .milliseconds(1), to: now, bytesPerConnection: 2_000)
        var queued = 0
        var decision = policy.firstWrite(at: now, queuedFrames: queued)
        for _ in benchmark.scaledIterations {
            switch decision {
            case .holdUntil(let deadline):
                now = deadline
                queued &+= 5_000
                decision = policy.holdEnded(at: now, queuedFrames: queued, waitingConnections: 500)
            case .flushNow:
                policy.flushed(from: now, to: now + .milliseconds(1), bytesPerConnection: 2_000)
                now = now + .milliseconds(1) + step
                queued = 0
                decision = policy.firstWrite(at: now, queuedFrames: queued)
            }
            blackHole(decision)
        }
    }

    // A loop with spare time: cheap flushes, so every first write flushes at the end of the tick.
    Benchmark("Flush at end of tick (cheap flushes)") { benchmark in
        var policy = FlushPolicy(maxDelay: .milliseconds(20))
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for _ in benchmark.scaledIterations {
            let decision = policy.firstWrite(at: now, queuedFrames: 0)
            policy.flushed(from: now, to: now + .microseconds(20), bytesPerConnection: 300)
            now = now + .microseconds(100)
            blackHole(decision)
        }
    }
}
