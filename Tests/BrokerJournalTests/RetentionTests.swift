import Foundation
import GRDB
import NIOCore
import Testing

@testable import BrokerJournal

/// Retention budgets, `prunedAfter` and clearing.
///
/// Retention runs in background passes on the writer thread (every millisecond here); a test
/// that checks what retention kept first calls `applyRetention()`, which runs passes behind every
/// request submitted before it until there is nothing left to do. So what is checked does not
/// depend on how many background passes happened to run, and a pass that removes too much or
/// too little shows, whenever it ran. Ages are read from a `TestClock`, never the system's.
@Suite struct RetentionTests {
    private func open(_ retention: RetentionPolicy, clock: TestClock? = nil) throws -> SQLiteJournal {
        var configuration = JournalConfiguration(retention: retention, pruneInterval: .milliseconds(1))
        if let clock { configuration.clock = { clock.read() } }
        return try SQLiteJournal.open(directory: makeTemporaryDirectory(), configuration: configuration, logger: quietLogger)
    }

    @Test func keepsTheNewestMessagesPerTopicWithOverrides() async throws {
        let journal = try open(RetentionPolicy(
            maxMessagesPerTopic: 5,
            overrides: [.init(filter: "keep/#", maxMessagesPerTopic: 8), .init(filter: "keep/more", maxMessagesPerTopic: 100)]))
        try await checkPerTopicRetentionWithOverrides(journal, applyRetention: journal.applyRetention)
        #expect(try await journal.stats().topics == 2)
        #expect(try await journal.prunedAfter(0, filter: "plain", on: loop).get())
        #expect(try await journal.prunedAfter(28, filter: "#", on: loop).get())
        #expect(try await !journal.prunedAfter(0, filter: "other/#", on: loop).get())
        await journal.close()
    }

    /// The pruner keeps per-topic counts in memory after counting once; they must follow every
    /// append, every removal and a clear, or the limit over- or under-prunes.
    @Test func countLimitHoldsAcrossPassesRemovalsAndClears() async throws {
        let journal = try open(RetentionPolicy(maxMessagesPerTopic: 5))
        // Background passes run every millisecond in between; the result must not depend on them.
        func settledTexts() async throws -> [String] {
            await journal.applyRetention()
            return try await journal.replayAll("a", .since(0)).map(\.text)
        }
        for index in 1...3 { _ = try await journal.append("a", "\(index)") }
        #expect(try await settledTexts() == ["1", "2", "3"])  // within the limit: counted, kept
        for index in 4...9 { _ = try await journal.append("a", "\(index)") }
        #expect(try await settledTexts() == (5...9).map(String.init))
        _ = try await journal.append("a", "10")  // one over a count that removals brought back to 5
        #expect(try await settledTexts() == (6...10).map(String.init))
        #expect(try await journal.clear(filter: "a", on: loop).get() == 5)
        for index in 11...13 { _ = try await journal.append("a", "\(index)") }  // a count reset by the clear
        #expect(try await settledTexts() == ["11", "12", "13"])
        await journal.close()
    }

    @Test func removesMessagesOlderThanTheirMaxAge() async throws {
        let clock = TestClock(1_000_000_000)
        let journal = try open(
            RetentionPolicy(maxAge: .seconds(3_600), overrides: [.init(filter: "long/#", maxAge: .seconds(86_400))]),
            clock: clock)
        _ = try await journal.append("short", "old")
        _ = try await journal.append("long/a", "old")
        clock.advance(by: 2 * 3_600_000)
        _ = try await journal.append("short", "new")
        await journal.applyRetention()
        #expect(try await journal.stats().messages == 2)
        #expect(try await journal.replayAll("#", .since(0)).map { "\($0.topic)=\($0.text)" } == ["long/a=old", "short=new"])
        #expect(try await journal.prunedAfter(0, filter: "short", on: loop).get())
        #expect(try await !journal.prunedAfter(0, filter: "long/#", on: loop).get())
        // Age applies also while nothing is appended: an idle writer wakes up for a pass about
        // once a second. Polled, with no bound on when it happens but the helper's generous one.
        clock.advance(by: 86_400_000)
        #expect(try await eventually { try await journal.stats().messages == 0 })
        await journal.close()
    }

    /// A message is kept while it is at most its max age old, and removed by the first pass after
    /// that, on the journal's clock: its timestamp is the clock's reading at commit.
    @Test func ageLimitIsExactOnTheInjectedClock() async throws {
        let clock = TestClock(1_000_000_000)
        var configuration = JournalConfiguration(
            retention: RetentionPolicy(maxAge: .seconds(60)), pruneInterval: .seconds(3_600))
        configuration.clock = { clock.read() }
        let journal = try SQLiteJournal.open(
            directory: makeTemporaryDirectory(), configuration: configuration, logger: quietLogger)
        _ = try await journal.append("t", "first")
        clock.advance(by: 30_000)
        _ = try await journal.append("t", "second")
        clock.advance(by: 30_000)  // first is exactly 60 s old
        await journal.applyRetention()
        #expect(try await journal.replayAll("t", .since(0)).map(\.text) == ["first", "second"])
        clock.advance(by: 1)
        await journal.applyRetention()
        #expect(try await journal.replayAll("t", .since(0)).map(\.text) == ["second"])
        #expect(try await journal.prunedAfter(0, filter: "t", on: loop).get())
        #expect(try await !journal.prunedAfter(1, filter: "t", on: loop).get())
        clock.advance(by: 29_999)  // second is exactly 60 s old
        await journal.applyRetention()
        #expect(try await journal.stats().messages == 1)
        clock.advance(by: 1)
        await journal.applyRetention()
        #expect(try await journal.stats().messages == 0)
        await journal.close()
    }

    /// `max-bytes` counts the database's pages in use, not payloads: 30,000 messages of 16 bytes
    /// are 480 KB of payload, under a 512 KiB budget, but several times that on disk. The oldest
    /// go first, and the file (checkpointed, free pages given back) stays near the budget.
    @Test func keepsTheDatabaseFileNearTheBudgetDroppingTheOldest() async throws {
        let directory = makeTemporaryDirectory()
        let budget: Int64 = 512 << 10
        var configuration = JournalConfiguration(
            retention: RetentionPolicy(maxMessagesPerTopic: 100_000, maxBytes: budget), pruneInterval: .milliseconds(1))
        configuration.maxBatchSize = 2_048
        let journal = try SQLiteJournal.open(directory: directory, configuration: configuration, logger: quietLogger)
        let total = 30_000
        await WildcardReplayTests.appendMany(journal, count: total, topic: { "t/\($0 % 300)" }, payload: String(repeating: "x", count: 16))
        await journal.applyRetention()
        let stats = try await journal.stats()
        #expect(stats.messages > 0 && stats.messages < total)
        #expect(stats.lastOffset == UInt64(total))
        #expect(stats.firstOffset == stats.lastOffset - UInt64(stats.messages) + 1)  // the oldest went
        #expect(try await journal.replayAll("t/+", .since(0)).map(\.offset) == Array(stats.firstOffset...stats.lastOffset))
        await journal.close()
        let path = directory + "/journal.sqlite"
        // What a checkpoint leaves (the broker's checkpointer does it in the background; the
        // pool's last connection may be a reader, which cannot).
        try await DatabaseQueue(path: path).writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
        let fileBytes = try #require(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int)
        print("max-bytes \(budget): kept \(stats.messages) of \(total) messages (\(stats.bytes) payload bytes), journal.sqlite \(fileBytes) bytes")
        #expect(Int64(fileBytes) <= budget + budget / 16 + 4 * 4_096)
        #expect(Int64(fileBytes) >= budget / 2)  // not cut far below the budget
        let usage = try await DatabaseQueue(path: path).read { db in try StorageUsage.read(db) }
        #expect(usage.usedBytes <= budget)
    }

    /// A journal made before incremental auto-vacuum (its database in WAL mode before the first
    /// table) still keeps its pages in use within the budget; its file just does not shrink.
    @Test func budgetHoldsInAJournalWithoutAutoVacuum() async throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/journal.sqlite"
        _ = try DatabaseQueue(path: path).inDatabase { db in try String.fetchOne(db, sql: "PRAGMA journal_mode = WAL") }
        let budget: Int64 = 256 << 10
        let journal = try SQLiteJournal.open(
            directory: directory,
            configuration: JournalConfiguration(
                retention: RetentionPolicy(maxMessagesPerTopic: 100_000, maxBytes: budget), pruneInterval: .milliseconds(1)),
            logger: quietLogger)
        await WildcardReplayTests.appendMany(journal, count: 20_000, topic: { "t/\($0 % 100)" }, payload: String(repeating: "x", count: 16))
        await journal.applyRetention()
        let kept = try await journal.stats().messages
        #expect(kept > 0 && kept < 20_000)
        await journal.close()
        let (autoVacuum, usage) = try await DatabaseQueue(path: path).read { db in
            (try Int.fetchOne(db, sql: "PRAGMA auto_vacuum"), try StorageUsage.read(db))
        }
        #expect(autoVacuum == 0)
        #expect(usage.usedBytes <= budget)
    }

    /// A topic whose messages are all gone loses its `topics` row (once nothing up to its last
    /// pruned offset is left in the journal); appending to it again makes a new row, and
    /// `prunedAfter` still reports what it lost.
    @Test func topicsWithNoMessagesLeftAreDropped() async throws {
        let clock = TestClock(1_000_000_000)
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(
            directory: directory,
            configuration: JournalConfiguration(
                retention: RetentionPolicy(maxAge: .seconds(60)), pruneInterval: .milliseconds(1), clock: { clock.read() }),
            logger: quietLogger)
        _ = try await journal.append("gone/1", "a")  // 1
        _ = try await journal.append("gone/2", "b")  // 2
        _ = try await journal.append("stay", "c")  // 3
        clock.advance(by: 61_000)
        _ = try await journal.append("stay", "d")  // 4
        _ = try await journal.append("cleared", "e")  // 5
        _ = try await journal.append("kept", "f")  // 6
        await journal.applyRetention()
        #expect(try await journal.clear(filter: "cleared", on: loop).get() == 1)
        await journal.applyRetention()
        #expect(try await journal.prunedAfter(1, filter: "gone/#", on: loop).get())
        #expect(try await journal.prunedAfter(1, filter: "kept", on: loop).get())  // a forgotten topic might have matched
        #expect(try await !journal.prunedAfter(3, filter: "stay", on: loop).get())
        #expect(try await journal.prunedAfter(4, filter: "cleared", on: loop).get())  // its row waits for offset 5 to go
        // The writer forgot the dropped ids: a new message on a dropped topic is found again.
        #expect(try await journal.append("gone/1", "g") == 7)
        #expect(try await journal.replayAll("gone/1", .history(5)).map(\.text) == ["g"])
        #expect(try await journal.replayAll("gone/#", .since(0)).map(\.text) == ["g"])
        await journal.close()
        let names = try await DatabaseQueue(path: directory + "/journal.sqlite").read { db in
            try String.fetchAll(db, sql: "SELECT name FROM topics ORDER BY name")
        }
        #expect(names == ["cleared", "gone/1", "kept", "stay"])
    }

    @Test func clearedTopicsAreDroppedOnceOlderThanEveryKeptMessage() async throws {
        let directory = makeTemporaryDirectory()
        let other = try SQLiteJournal.open(
            directory: directory, configuration: JournalConfiguration(pruneInterval: .milliseconds(1)), logger: quietLogger)
        for index in 1...4 { _ = try await other.append("room/\(index)", "\(index)") }
        _ = try await other.append("later", "5")
        #expect(try await other.clear(filter: "room/#", on: loop).get() == 4)
        await other.applyRetention()
        #expect(try await other.prunedAfter(3, filter: "room/#", on: loop).get())
        #expect(try await other.prunedAfter(3, filter: "anything", on: loop).get())
        #expect(try await !other.prunedAfter(4, filter: "room/#", on: loop).get())
        #expect(try await !other.prunedAfter(4, filter: "later", on: loop).get())
        #expect(try await other.clear(filter: "later", on: loop).get() == 1)
        await other.applyRetention()
        #expect(try await other.prunedAfter(4, filter: "anything", on: loop).get())
        await other.close()
        let count = try await DatabaseQueue(path: directory + "/journal.sqlite").read { db in
            try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM topics")
        }
        #expect(count == 0)
    }

    @Test func clearRemovesMatchingTopicsAndMarksThemPruned() async throws {
        for journal: any Journal in [try open(RetentionPolicy()), MemoryJournal()] {
            for index in 1...4 {
                _ = try await journal.append("room/\(index % 2)/a", "\(index)")
                _ = try await journal.append("other", "\(index)")
            }
            #expect(try await !journal.prunedAfter(0, filter: "room/#", on: loop).get())
            #expect(try await journal.clear(filter: "room/+/a", on: loop).get() == 4)
            #expect(try await journal.replayAll("room/#", .history(10)).isEmpty)
            #expect(try await journal.replayAll("other", .history(10)).count == 4)
            #expect(try await journal.prunedAfter(6, filter: "room/#", on: loop).get())
            #expect(try await !journal.prunedAfter(7, filter: "room/#", on: loop).get())
            #expect(try await !journal.prunedAfter(0, filter: "other", on: loop).get())
            #expect(try await journal.clear(filter: "room/#", on: loop).get() == 0)
            #expect(try await journal.clear(filter: "other", on: loop).get() == 4)
            let stats = try await journal.stats()
            #expect(stats.messages == 0 && stats.bytes == 0 && stats.topics == 0 && stats.lastOffset == 8)
            #expect(try await journal.append("room/1/a", "again") == 9)
            await journal.close()
        }
    }

    @Test func memoryJournalKeepsTheNewestPerTopic() async throws {
        let journal = MemoryJournal(retention: RetentionPolicy(maxMessagesPerTopic: 2))
        for index in 1...5 { _ = try await journal.append("t", "\(index)") }
        #expect(try await journal.replayAll("t", .since(0)).map(\.text) == ["4", "5"])
        #expect(try await journal.prunedAfter(2, filter: "t", on: loop).get())
        #expect(try await !journal.prunedAfter(3, filter: "t", on: loop).get())
        #expect(try await journal.stats().prunedMessages == 3)
        await journal.close()
    }
}
