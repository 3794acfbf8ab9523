import BrokerProtocol
import Testing
@testable import BrokerClient

@Suite struct ResumeStateTests {
    @Test func liveOnlySubscriptionResubscribesWithoutSince() {
        var state = ResumeState(filter: "a/#", history: 0, since: nil, currentEpoch: "e1")
        #expect(!state.wantsRetained)
        do { let value = state.accept(topic: "a/x", offset: 5); #expect(value) }
        let request = state.resubscribeRequest(currentEpoch: "e1")
        #expect(request == SubscribeRequest(filter: "a/#", history: 0, since: nil, epoch: nil))
    }

    @Test func resumesFromTheHighestOffsetSeenInItsEpoch() {
        var state = ResumeState(filter: "s/#", history: 5, since: nil, currentEpoch: "e1")
        #expect(state.wantsRetained)
        #expect(state.initialRequest == SubscribeRequest(filter: "s/#", history: 5))
        // A history replay interleaves topics: offsets are ordered per topic only.
        do { let value = state.accept(topic: "s/b", offset: 10); #expect(value) }
        do { let value = state.accept(topic: "s/b", offset: 12); #expect(value) }
        do { let value = state.accept(topic: "s/a", offset: 3); #expect(value) }  // lower than s/b's, still new
        do { let value = state.accept(topic: "s/a", offset: 11); #expect(value) }
        do { let value = state.accept(topic: "s/a", offset: nil); #expect(value) }  // not retained: always delivered
        #expect(state.lastOffset == 12)
        let request = state.resubscribeRequest(currentEpoch: "e1")
        #expect(request == SubscribeRequest(filter: "s/#", history: 5, since: 12, epoch: "e1"))
        // After the resume, the broker replays > 12; anything at or below a topic's last is a duplicate.
        do { let value = !state.accept(topic: "s/b", offset: 12); #expect(value) }
        do { let value = !state.accept(topic: "s/a", offset: 11); #expect(value) }
        do { let value = state.accept(topic: "s/a", offset: 13); #expect(value) }
        do { let value = state.resubscribeRequest(currentEpoch: "e1").since == 13; #expect(value) }
    }

    @Test func nothingSeenYetResumesFromZero() {
        var state = ResumeState(filter: "t", history: nil, since: nil, currentEpoch: "e1")
        #expect(state.wantsRetained)  // the broker's default history is 1
        #expect(state.initialRequest.history == 1)
        do { let value = state.resubscribeRequest(currentEpoch: "e1") == SubscribeRequest(filter: "t", history: 1, since: 0, epoch: "e1"); #expect(value) }
    }

    @Test func explicitSinceIsTheFloor() {
        var state = ResumeState(filter: "t", history: 0, since: 40, requestedEpoch: "e0", currentEpoch: "e1")
        #expect(state.wantsRetained)
        #expect(state.initialRequest == SubscribeRequest(filter: "t", history: 0, since: 40, epoch: "e0"))
        do { let value = state.resubscribeRequest(currentEpoch: "e1").since == 40; #expect(value) }
        do { let value = state.accept(topic: "t", offset: 41); #expect(value) }
        do { let value = state.resubscribeRequest(currentEpoch: "e1").since == 41; #expect(value) }
    }

    @Test func epochChangeSendsTheOldEpochAndForgetsOffsets() {
        var state = ResumeState(filter: "t/#", history: 2, since: nil, currentEpoch: "e1")
        do { let value = state.accept(topic: "t/a", offset: 100); #expect(value) }
        // The journal was recreated: the resume names e1 so the broker says recovered:false and
        // replays the current state as history says.
        let request = state.resubscribeRequest(currentEpoch: "e2")
        #expect(request == SubscribeRequest(filter: "t/#", history: 2, since: 100, epoch: "e1"))
        #expect(state.epoch == "e2")
        #expect(state.lastOffset == nil)
        // Offsets restart in the new epoch and are not mistaken for duplicates.
        do { let value = state.accept(topic: "t/a", offset: 1); #expect(value) }
        do { let value = state.resubscribeRequest(currentEpoch: "e2") == SubscribeRequest(filter: "t/#", history: 2, since: 1, epoch: "e2"); #expect(value) }
    }

    @Test func unknownEpochIsNotSent() {
        // A broker without a journal (or the protocol mock) announces no epoch.
        var state = ResumeState(filter: "x", history: 1, since: nil, currentEpoch: "")
        do { let value = state.accept(topic: "x", offset: 9); #expect(value) }
        do { let value = state.resubscribeRequest(currentEpoch: "") == SubscribeRequest(filter: "x", history: 1, since: 9, epoch: nil); #expect(value) }
    }
}
