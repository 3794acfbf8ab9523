import NIOCore

/// A token bucket for one connection's publishes (`limits.publish-rate`): `rate` tokens a
/// second, holding at most `rate` (the burst), full at the start. A publish takes one token; with
/// none left it is refused.
///
/// Owned by one connection and driven by its loop's clock (`eventLoop.now`), so that tests move
/// time by advancing an EmbeddedEventLoop. Credit is kept in nanoseconds of refill time, in
/// integers: no drift, no floating point. A class so that a connection without a limit (the
/// default) pays for a nil reference, not for 41 bytes of an optional bucket.
final class PublishRateLimiter {
    /// Tokens per second, and the most the bucket holds.
    let rate: Int
    /// Refill time of one token.
    private let interval: Int64
    /// Refill time of a full bucket.
    private let capacity: Int64
    /// Refill time stored (0...capacity) as of `updated`.
    private var credit: Int64
    private var updated: NIODeadline

    init(rate: Int, now: NIODeadline) {
        precondition(rate > 0)
        self.rate = rate
        self.interval = max(1, 1_000_000_000 / Int64(rate))
        self.capacity = interval * Int64(rate)
        self.credit = capacity
        self.updated = now
    }

    /// Takes a token if there is one at `now`.
    func take(now: NIODeadline) -> Bool {
        if now > updated {
            let elapsed = (now - updated).nanoseconds
            credit = elapsed >= capacity - credit ? capacity : credit + elapsed
            updated = now
        }
        guard credit >= interval else { return false }
        credit -= interval
        return true
    }
}
