/// The reconnect schedule: exponential backoff with jitter.
///
/// Attempt `n` (0-based) waits `min(maximum, initial × multiplier^n)`, reduced by a random
/// fraction of up to `jitter` of itself, so that many clients cut off at once by a broker restart
/// do not all come back in the same instant. With the defaults the waits are about
/// 0.1 s, 0.2 s, 0.4 s, … capped at 10 s, each between 50 % and 100 % of that value.
public struct Backoff: Sendable, Equatable {
    /// Wait before the first reconnect attempt (before jitter).
    public var initial: Duration
    /// Upper bound of any wait (before jitter).
    public var maximum: Duration
    /// Growth factor per failed attempt.
    public var multiplier: Double
    /// Fraction (0...1) of a wait that is randomly taken off it.
    public var jitter: Double

    public init(
        initial: Duration = .milliseconds(100), maximum: Duration = .seconds(10),
        multiplier: Double = 2, jitter: Double = 0.5
    ) {
        self.initial = initial
        self.maximum = maximum
        self.multiplier = max(1, multiplier)
        self.jitter = min(max(0, jitter), 1)
    }

    /// The wait before attempt `attempt` without jitter.
    public func baseDelay(attempt: Int) -> Duration {
        let initialSeconds = initial.seconds
        let maximumSeconds = maximum.seconds
        // Stop multiplying once past the cap (and long before Double overflows).
        var seconds = initialSeconds
        var step = 0
        while step < attempt && seconds < maximumSeconds {
            seconds *= multiplier
            step += 1
        }
        return .seconds(min(seconds, maximumSeconds))
    }

    /// The wait before attempt `attempt`; `random` is a number in `0..<1`.
    public func delay(attempt: Int, random: Double) -> Duration {
        let base = baseDelay(attempt: attempt).seconds
        return .seconds(base * (1 - jitter * min(max(random, 0), 1)))
    }

    /// The wait before attempt `attempt`, with system randomness.
    public func delay(attempt: Int) -> Duration {
        delay(attempt: attempt, random: Double.random(in: 0..<1))
    }
}

extension Duration {
    /// The duration in seconds as a floating-point number.
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
