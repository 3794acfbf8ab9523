import BrokerJournal
import NIOCore
import Testing

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
        for index in 1...20 {
            _ = try await journal.append("plain", "\(index)")
            _ = try await journal.append("keep/more", "\(index)")
        }
        await journal.applyRetention()
        #expect(try await journal.stats().messages == 5 + 8)
        #expect(try await journal.replayAll("plain", .since(0)).map(\.text) == (16...20).map(String.init))
        #expect(try await journal.replayAll("keep/more", .since(0)).map(\.text) == (13...20).map(String.init))
        let stats = try await journal.stats()
        #expect(stats.prunedMessages == 15 + 12)
        #expect(stats.topics == 2)
        #expect(stats.lastOffset == 40)
        // plain kept offsets 31,33,..,39: pruned through 29.
        #expect(try await journal.prunedAfter(0, filter: "plain", on: loop).get())
        #expect(try await journal.prunedAfter(28, filter: "plain", on: loop).get())
        #expect(try await !journal.prunedAfter(29, filter: "plain", on: loop).get())
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

    @Test func keepsThePayloadBytesUnderBudgetDroppingTheOldest() async throws {
        let journal = try open(RetentionPolicy(maxBytes: 1_000))
        let payload = String(repeating: "x", count: 100)
        for index in 0..<30 { _ = try await journal.append("t/\(index % 3)", payload) }
        await journal.applyRetention()
        let stats = try await journal.stats()
        #expect(stats.messages == 10 && stats.bytes == 1_000)
        #expect(stats.firstOffset == 21 && stats.lastOffset == 30)
        #expect(try await journal.replayAll("t/+", .since(0)).map(\.offset) == Array(21...30))
        await journal.close()
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
