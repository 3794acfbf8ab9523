import BrokerJournal
import NIOCore
import Testing

@testable import BrokerJournalPostgres

/// The cluster feed's decisions without PostgreSQL (`FeedStateMachine`, `JournalCatchUp`,
/// `FeedBacklog`): gaps, this broker's groups, reconnection catch-ups, overflow. The same paths
/// against a real server are in PostgresJournalTests.
@Suite struct FeedStateMachineTests {
    private final class Append: JournalAppendRequest, @unchecked Sendable {
        let topic = "t"
        let payload = ByteBuffer(string: "\"x\"")
        let isBinary = false
        func completed(_ result: Result<UInt64, JournalError>) {}
    }

    private func group(_ batch: UInt64, before: UInt64, appends: Int) -> OwnBatches.Committed {
        OwnBatches.Committed(batch: batch, before: before, requests: (0..<appends).map { _ in .append(Append()) })
    }

    private func retained(_ offset: UInt64, inline: Bool = true) -> FeedNotification.Entry {
        .retained(offset: offset, topic: "t/\(offset)", isBinary: false, payload: inline ? ByteBuffer(string: "\(offset)") : nil)
    }

    private func row(_ offset: UInt64) -> PostgresQueries.Row {
        PostgresQueries.Row(offset: offset, topic: "t/\(offset)", payload: ByteBuffer(string: "\(offset)"), isBinary: false, timestampMilliseconds: 0)
    }

    /// A step as text, so that whole plans compare in one expectation.
    private func describe(_ steps: [FeedStateMachine.Step]) -> [String] {
        steps.map { step in
            switch step {
            case .deliver(let publication):
                return publication.offset.map { "deliver \($0)" } ?? "live \(publication.topic)"
            case .completeOwn(let own):
                return "complete group \(own.batch)"
            case .readJournal(let through, let except):
                return "read through \(through)" + (except.map { " except group \($0)" } ?? "")
            case .skip(let offset):
                return "skip \(offset)"
            }
        }
    }

    /// A machine that started following after `offset`, and performs every step it plans.
    private func started(at offset: UInt64) -> FeedStateMachine {
        var machine = FeedStateMachine(instance: "me")
        #expect(machine.listening() == .readStartingOffset)
        machine.started(at: offset)
        #expect(machine.isListening && machine.followed == offset)
        return machine
    }

    private func perform(_ steps: [FeedStateMachine.Step], on machine: inout FeedStateMachine) {
        for step in steps {
            switch step {
            case .deliver(let publication): if let offset = publication.offset { machine.record(followed: offset) }
            case .completeOwn(let own): machine.record(followed: own.before + UInt64(own.appendCount))
            case .readJournal(let through, _): machine.record(followed: through)
            case .skip(let offset): machine.record(followed: offset)
            }
        }
    }

    @Test func nothingIsDeliveredBeforeTheStartingOffsetIsKnown() {
        let machine = FeedStateMachine(instance: "me")
        let batch = FeedNotification(writer: "other", batch: 1, entries: [retained(1), .live(topic: "l", isBinary: false, payload: ByteBuffer())])
        #expect(machine.plan(batch, own: nil, referenced: [:]).isEmpty)
        #expect(machine.followed == nil && !machine.isListening)
    }

    @Test func anotherBrokersBatchIsDeliveredInOrderWithItsLiveMessages() {
        var machine = started(at: 10)
        let batch = FeedNotification(writer: "other", batch: 4, entries: [
            retained(11), .live(topic: "news", isBinary: false, payload: ByteBuffer(string: "1")), retained(12),
        ])
        let steps = machine.plan(batch, own: nil, referenced: [:])
        #expect(describe(steps) == ["deliver 11", "live news", "deliver 12"])
        perform(steps, on: &machine)
        #expect(machine.followed == 12)
        // The same offsets again (a catch-up read them first): nothing twice.
        #expect(describe(machine.plan(batch, own: nil, referenced: [:])) == ["live news"])
    }

    @Test func aGapIsReadFromTheJournalBeforeTheMessagesAfterIt() {
        var machine = started(at: 10)
        let batch = FeedNotification(writer: "other", batch: 9, entries: [retained(13), retained(14), retained(17)])
        let steps = machine.plan(batch, own: nil, referenced: [:])
        #expect(describe(steps) == ["read through 12", "deliver 13", "deliver 14", "read through 16", "deliver 17"])
        perform(steps, on: &machine)
        #expect(machine.followed == 17)
    }

    @Test func messagesByReferenceUseTheRowsReadAndSkipThosePrunedMeanwhile() {
        let machine = started(at: 20)
        let batch = FeedNotification(writer: "other", batch: 2, entries: [
            retained(19, inline: false), retained(21, inline: false), retained(22), retained(23, inline: false),
        ])
        #expect(machine.referencedOffsets(in: batch, isOwn: false) == [21, 23])
        #expect(machine.referencedOffsets(in: batch, isOwn: true).isEmpty)
        let steps = machine.plan(batch, own: nil, referenced: [21: ByteBuffer(string: "big")])
        #expect(describe(steps) == ["deliver 21", "deliver 22", "skip 23"])
        if case .deliver(let publication) = steps[0] { #expect(String(buffer: publication.payload) == "big") }
    }

    @Test func ourGroupIsCompletedAfterTheGroupsThatCommittedBeforeIt() {
        var machine = started(at: 5)
        let ours = group(3, before: 8, appends: 2)
        let batch = FeedNotification(writer: "me", batch: 3, entries: [retained(9), retained(10)])
        // Offsets 6...8 are other brokers' whose notifications were not processed yet.
        let steps = machine.plan(batch, own: ours, referenced: [:])
        #expect(describe(steps) == ["read through 8 except group 3", "complete group 3"])
        perform(steps, on: &machine)
        #expect(machine.followed == 10)
        // Right behind the followed offset: completed at once.
        let next = group(4, before: 10, appends: 1)
        #expect(describe(machine.plan(FeedNotification(writer: "me", batch: 4, entries: [retained(11)]), own: next, referenced: [:]))
            == ["complete group 4"])
    }

    @Test func ourGroupThatFailedHereButCommittedIsDeliveredWithoutItsLiveMessages() {
        let machine = started(at: 5)
        let batch = FeedNotification(writer: "me", batch: 7, entries: [
            retained(6), .live(topic: "ours", isBinary: false, payload: ByteBuffer(string: "1")),
        ])
        #expect(describe(machine.plan(batch, own: nil, referenced: [:])) == ["deliver 6"])
    }

    @Test func aReconnectionCatchesUpFromTheFollowedOffsetCompletingOurGroupsWhereTheyStand() {
        var machine = started(at: 5)
        machine.lost()
        #expect(!machine.isListening)
        guard case .catchUp(let from) = machine.listening() else {
            Issue.record("a reconnection must catch up")
            return
        }
        #expect(from == 5)
        // Ours: 8...9 (inside the range), 11...12 (ends it, its rows pruned), 13 (after the target).
        let committed = [group(1, before: 7, appends: 2), group(2, before: 10, appends: 2), group(3, before: 12, appends: 1)]
        var catchUp = JournalCatchUp(from: from, through: 12, own: committed)
        var steps: [FeedStateMachine.Step] = []
        var pages: [String] = []
        while let page = catchUp.nextPage {
            pages.append("(\(page.after), \(page.through)]")
            // Pages of at most five rows; 11 and 12 are gone (retention).
            let rows = (page.after + 1...page.through).filter { $0 <= 10 }.prefix(5).map(row)
            steps += catchUp.received(rows)
        }
        steps += catchUp.finish()
        #expect(pages == ["(5, 12]", "(10, 12]"])
        #expect(describe(steps) == ["deliver 6", "deliver 7", "complete group 1", "deliver 10", "complete group 2"])
        #expect(catchUp.followed == 12)
        perform(steps, on: &machine)
        machine.record(followed: catchUp.followed)
        machine.caughtUp()
        #expect(machine.isListening && machine.followed == 12)
    }

    @Test func aCatchUpForOurGroupSkipsThatGroup() {
        var catchUp = JournalCatchUp(from: 5, through: 8, own: [group(3, before: 8, appends: 2), group(2, before: 6, appends: 1)], except: 3)
        var steps = catchUp.received([row(6), row(7), row(8)])
        steps += catchUp.finish()
        #expect(describe(steps) == ["deliver 6", "complete group 2", "deliver 8"])
    }

    @Test func aHalfAssembledBatchIsForgottenWhenTheConnectionIsLost() {
        var machine = started(at: 0)
        let big = ByteBuffer(repeating: UInt8(ascii: "x"), count: FeedNotification.maxChunkBytes)
        let first = FeedNotification(writer: "other", batch: 1, entries: [.live(topic: "a", isBinary: true, payload: big)]).encodedChunks()
        #expect(first.count > 1)
        var dropped: [String] = []
        let half = machine.received(first[0], dropped: { dropped.append($0) })
        #expect(half == nil)
        machine.lost()
        // After the reconnection the rest of that batch is never sent again; a new one assembles.
        let next = FeedNotification(writer: "other", batch: 2, entries: [retained(1)])
        let rest = machine.received(first[1], dropped: { dropped.append($0) })
        let whole = machine.received(next.encodedChunks()[0], dropped: { dropped.append($0) })
        #expect(rest == nil && whole == next)
        #expect(dropped == ["chunk out of order"])
    }

    @Test func aBacklogPastItsLimitOverflowsAndTheFeedCatchesUpInstead() {
        var backlog = FeedBacklog(limit: 2)
        let admitted = [backlog.admit(), backlog.admit(), backlog.admit()]
        #expect(admitted == [true, true, false])
        backlog.take()
        let again = backlog.admit()
        #expect(again && backlog.waiting == 2)

        // The overflow drops the connection: what was followed is where the catch-up starts.
        var machine = started(at: 40)
        perform(machine.plan(FeedNotification(writer: "other", batch: 1, entries: [retained(41)]), own: nil, referenced: [:]), on: &machine)
        machine.lost()
        #expect(machine.listening() == .catchUp(from: 41))
    }
}
