import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// Journal backpressure (`limits.max-pending-retained`, `limits.max-pending-retained-bytes`):
/// with a journal that commits when the test says (`HeldJournal`), a connection whose retained
/// publishes wait for the writer stops letting reads through at the bound and lets them through
/// again once commits bring it under; no error, nothing lost.
@Suite struct JournalBackpressureTests {
    static func retained(_ id: Int, topic: String = "t") -> String {
        #"{"op":"publish","topic":"\#(topic)","data":\#(id),"retain":true,"id":\#(id)}"#
    }

    @Test func readsStopAtThePerConnectionBoundAndResumeWhenTheJournalCatchesUp() throws {
        let harness = LimitsHarness { $0.maxPendingRetained = 3 }
        let publisher = try harness.connect()
        #expect(publisher.readPasses())

        try publisher.send(Self.retained(1))
        try publisher.send(Self.retained(2))
        #expect(publisher.readPasses())
        try publisher.send(Self.retained(3))
        #expect(!publisher.readPasses())  // three wait for the journal: reading stops
        #expect(!publisher.readPasses())
        #expect(harness.journal.pendingCount == 3)

        // The writer commits: the read held back goes through by itself, once.
        let readsBefore = publisher.reads.reads
        harness.journal.commit()
        harness.loop.run()
        #expect(publisher.reads.reads == readsBefore + 1)
        #expect(publisher.readPasses())
        let acks = try publisher.texts()
        #expect(acks == [#"{"op":"ack","id":1,"offset":1}"#, #"{"op":"ack","id":2,"offset":2}"#, #"{"op":"ack","id":3,"offset":3}"#])
        #expect(publisher.channel.isActive)
    }

    @Test func whatWasAlreadyReadIsServedAndNothingIsLost() throws {
        let harness = LimitsHarness { $0.maxPendingRetained = 2 }
        let subscriber = try harness.connect()
        try subscriber.send(#"{"op":"subscribe","topic":"t","history":0}"#)
        harness.loop.run()
        _ = try subscriber.texts()
        let publisher = try harness.connect()
        // Five arrive in one read (the socket read is already done): all are taken.
        for id in 1...5 { try publisher.send(Self.retained(id)) }
        #expect(!publisher.readPasses())
        harness.journal.commit()
        harness.loop.run()
        #expect(publisher.readPasses())
        #expect(try publisher.texts().count == 5)
        #expect(try subscriber.texts().filter { $0.hasPrefix(#"{"op":"message""#) }.count == 5)
    }

    @Test func aCommitThatLeavesTheConnectionAtTheBoundKeepsReadingStopped() throws {
        let harness = LimitsHarness { $0.maxPendingRetained = 2 }
        let publisher = try harness.connect()
        try publisher.send(Self.retained(1))
        try publisher.send(Self.retained(2))
        harness.journal.commit()  // commits 1 and 2, but their completions are not served yet
        try publisher.send(Self.retained(3))
        try publisher.send(Self.retained(4))
        #expect(!publisher.readPasses())
        harness.loop.run()  // 1 and 2 complete: 3 and 4 still wait, the bound still holds
        #expect(!publisher.readPasses())
        harness.journal.commit()
        harness.loop.run()
        #expect(publisher.readPasses())
        #expect(try publisher.texts().count == 4)
    }

    @Test func theTotalBoundStopsEveryConnectionWithPublishesWaiting() throws {
        let held = RetainedPublication.heldBytes(topic: "t", payloadBytes: 1)
        let harness = LimitsHarness { $0.maxPendingRetainedBytes = 3 * held }
        let first = try harness.connect()
        let second = try harness.connect()
        let idle = try harness.connect()
        try first.send(Self.retained(1))
        try second.send(Self.retained(2))
        #expect(first.readPasses() && second.readPasses())
        try second.send(Self.retained(3))  // three in all
        #expect(!second.readPasses())
        try first.send(Self.retained(4))
        #expect(!first.readPasses())
        #expect(idle.readPasses())  // nothing of its own waits: it is not held
        #expect(harness.broker.retainedBytesAwaitingJournal == 4 * held)

        harness.journal.commit()
        harness.loop.run()
        #expect(first.readPasses() && second.readPasses())
        #expect(harness.broker.retainedBytesAwaitingJournal == 0)
        #expect(try first.texts().count == 2 && second.texts().count == 2)
    }

    @Test func liveMessagesAndTheHTTPAPIAreNotCounted() throws {
        let harness = LimitsHarness { $0.maxPendingRetained = 1 }
        let publisher = try harness.connect()
        for id in 1...10 { try publisher.send(#"{"op":"publish","topic":"t","data":\#(id),"id":\#(id)}"#) }
        #expect(publisher.readPasses())
        try publisher.send(Self.retained(11))
        #expect(!publisher.readPasses())
        // A live publish behind the retained one waits in the writer too, but is not counted.
        try publisher.send(#"{"op":"publish","topic":"t","data":12,"id":12}"#)
        harness.journal.commit()
        harness.loop.run()
        #expect(publisher.readPasses())
        #expect(harness.broker.retainedBytesAwaitingJournal == 0)
        #expect(try publisher.texts().count == 12)
    }

    @Test func aConnectionThatClosesWithPublishesWaitingGivesItsShareBack() throws {
        let harness = LimitsHarness { $0.maxPendingRetained = 100 }
        let publisher = try harness.connect()
        for id in 1...3 { try publisher.send(Self.retained(id)) }
        #expect(harness.broker.retainedBytesAwaitingJournal > 0)
        try publisher.channel.close().wait()
        harness.journal.commit()
        harness.loop.run()
        #expect(harness.broker.retainedBytesAwaitingJournal == 0)
    }
}
