import Testing
@testable import BrokerClient

@Suite struct BackoffTests {
    @Test func doublesFromInitialToTheCap() {
        let backoff = Backoff()  // 0.1 s doubling to 10 s
        let seconds = (0..<10).map { backoff.baseDelay(attempt: $0).seconds }
        #expect(seconds.map { ($0 * 1000).rounded() } == [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000])
        #expect(backoff.baseDelay(attempt: 10_000) == .seconds(10))
    }

    @Test func jitterTakesOffUpToItsFraction() {
        let backoff = Backoff(initial: .seconds(1), maximum: .seconds(8), multiplier: 2, jitter: 0.5)
        #expect(backoff.delay(attempt: 1, random: 0) == .seconds(2))
        #expect(abs(backoff.delay(attempt: 1, random: 0.5).seconds - 1.5) < 1e-9)
        #expect(abs(backoff.delay(attempt: 1, random: 0.999_999).seconds - 1.0) < 1e-5)
        for attempt in 0..<20 {
            let delay = backoff.delay(attempt: attempt).seconds
            let base = backoff.baseDelay(attempt: attempt).seconds
            #expect(delay >= base * 0.5 && delay <= base)
        }
    }

    @Test func noJitterIsDeterministic() {
        let backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(1), multiplier: 3, jitter: 0)
        #expect(backoff.delay(attempt: 0) == .milliseconds(250))
        #expect(backoff.delay(attempt: 1) == .milliseconds(750))
        #expect(backoff.delay(attempt: 2) == .seconds(1))
    }
}
