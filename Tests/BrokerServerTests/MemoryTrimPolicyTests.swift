import Testing

@testable import BrokerServer

@Suite struct MemoryTrimPolicyTests {
    @Test func trimsAfterAWaveOfClosesAndOnlyThen() {
        var policy = MemoryTrimPolicy()
        let steps: [(open: Int, closed: Int, trims: Bool, why: String)] = [
            (0, 0, false, "nothing happened yet"),
            (10_000, 0, false, "connections came, none left"),
            (9_500, 500, false, "500 of 10,000 left: 5 %"),
            (100, 20_400, true, "a wave came and went between two looks"),
            (100, 20_400, false, "nothing closed since the trim"),
            (150, 20_450, false, "50 closed: under the minimum"),
            (5_000, 20_600, false, "200 closed of 5,200: under 10 %"),
            (0, 25_600, true, "all of them left"),
        ]
        for step in steps {
            let trims = policy.shouldTrim(open: step.open, closed: step.closed)
            #expect(trims == step.trims, "\(step.open) open, \(step.closed) closed: \(step.why)")
        }
    }

    @Test func returningFreedMemoryIsSafeToCallAnyTime() {
        MemoryReclaimer.returnFreedMemory()
        MemoryReclaimer.returnFreedMemory()
    }
}
