import Foundation
import GRDB
import GRDBSQLite
import NIOCore
import Testing

@testable import BrokerJournal

/// A wildcard replay costs what it returns, not the size of the journal: its filter is resolved on
/// `topics`, then each matching topic is read through the `(topic_id, offset)` index.
@Suite struct WildcardReplayTests {
    /// `journal` fed `count` messages without waiting for each commit; returns the last offset.
    @discardableResult
    static func appendMany(_ journal: any Journal, count: Int, topic: @escaping @Sendable (Int) -> String, payload: String = "42") async -> UInt64 {
        let buffer = ByteBuffer(string: payload)
        return await withCheckedContinuation { (done: CheckedContinuation<UInt64, Never>) in
            for index in 0..<count {
                journal.append(JournalEntry(topic: topic(index), payload: buffer, isBinary: false)) { result in
                    // Completions run in offset order: the last one comes last.
                    if index == count - 1 { done.resume(returning: (try? result.get()) ?? 0) }
                }
            }
        }
    }

    /// What one replay (all its pages) cost SQLite: the SQL it ran and the virtual-machine
    /// instructions it took (counted by a progress handler every `granularity` instructions).
    struct Cost {
        var records: [RetainedRecord] = []
        var statements: Set<String> = []
        var instructions = 0
        /// Lookups of a topic's name by id (the walk's matching of a topic it meets).
        var nameLookups = 0
    }

    final class Ticks: @unchecked Sendable { var count = 0 }
    static let granularity: CInt = 100

    static func cost(
        _ filter: String, _ selection: ReplaySelection, upTo: UInt64, pageSize: Int = 512,
        topicCache: ReplayTopicCache? = nil, _ db: Database
    ) throws -> Cost {
        var cost = Cost()
        let ticks = Ticks()
        db.trace(options: .statement) { event in
            if case .statement(let statement) = event {
                cost.statements.insert(statement.sql)
                if statement.sql == "SELECT name FROM topics WHERE id = ?" { cost.nameLookups += 1 }
            }
        }
        sqlite3_progress_handler(db.sqliteConnection, granularity, { context in
            Unmanaged<Ticks>.fromOpaque(context!).takeUnretainedValue().count += 1
            return 0
        }, Unmanaged.passUnretained(ticks).toOpaque())
        defer {
            sqlite3_progress_handler(db.sqliteConnection, 0, nil, nil)
            db.trace(options: .statement, nil)
        }
        var after: UInt64 = 0
        while true {
            let page = try JournalQueries.replayPage(
                ReplayQuery(
                    filter: filter, selection: selection, after: after, upTo: upTo, limit: pageSize,
                    topicCache: topicCache), db)
            cost.records += page.records
            if page.isLast { break }
            after = page.records.last!.offset
        }
        cost.instructions = ticks.count * Int(granularity)
        return cost
    }

    /// The details of `EXPLAIN QUERY PLAN sql`, its parameters bound to NULL.
    static func plan(_ sql: String, _ db: Database) throws -> [String] {
        let statement = try db.makeStatement(sql: "EXPLAIN QUERY PLAN " + sql)
        let parameters = Int(sqlite3_bind_parameter_count(statement.sqliteStatement))
        let arguments = StatementArguments([DatabaseValue](repeating: .null, count: parameters))
        return try Row.fetchAll(statement, arguments: arguments).map { $0["detail"] as String }
    }

    /// A replay keeps what it learned about topics from page to page (`ReplayTopicCache`): its
    /// later pages look no topic up again, and the records are the same as without it.
    @Test(arguments: [ReplaySelection.since(0), .since(9_000), .history(7)])
    func aReplayLooksEachTopicUpOnceAcrossItsPages(selection: ReplaySelection) async throws {
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        // Round-robin over 300 topics, of which 200 match: every page meets most of them.
        await Self.appendMany(journal, count: 15_000) { $0 % 3 == 2 ? "other/\($0 % 300)" : "bench/\($0 % 300)" }
        let upTo = await journal.snapshot()
        await journal.close()

        let queue = try DatabaseQueue(path: directory + "/journal.sqlite")
        try await queue.read { db in
            let fresh = try Self.cost("bench/#", selection, upTo: upTo, pageSize: 100, db)
            let cached = try Self.cost("bench/#", selection, upTo: upTo, pageSize: 100, topicCache: ReplayTopicCache(), db)
            #expect(!cached.records.isEmpty)
            #expect(cached.records == fresh.records)
            #expect(cached.nameLookups <= 300, "each topic met is looked up once")
            #expect(fresh.nameLookups > 2 * 300, "without the cache, every page looks its topics up again")
        }
    }

    @Test func wildcardReplayReadsOnlyTheMatchingTopicsThroughTheIndex() async throws {
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        let messages = 20_000
        await Self.appendMany(journal, count: messages) { "bench/\($0 % 200)" }
        _ = try await journal.append("other/x", "1")
        let upTo = await journal.snapshot()
        await journal.close()

        let queue = try DatabaseQueue(path: directory + "/journal.sqlite")
        try await queue.read { db in
            let cases: [(String, ReplaySelection, Int)] = [
                ("+/nothing", .history(1), 0),
                ("nothing/#", .history(1), 0),
                ("other/#", .history(1), 1),
                ("other/#", .since(0), 1),
                ("+/x", .since(100), 1),
                ("bench/+", .history(1), 200),
                ("#", .since(upTo - 300), 300),
            ]
            for (filter, selection, expected) in cases {
                let cost = try Self.cost(filter, selection, upTo: upTo, db)
                #expect(cost.records.count == expected, "\(filter) \(selection)")
                // A walk of the journal takes several instructions per message; the index reads
                // take a few dozen per topic and per record returned.
                let bound = 10_000 + 400 * expected
                print("replay \(filter) \(selection) on \(messages) messages: \(cost.records.count) records, \(cost.instructions) VM instructions")
                #expect(cost.instructions <= bound, "\(filter) \(selection): \(cost.instructions) VM instructions for \(expected) records")
                for sql in cost.statements {
                    let plan = try Self.plan(sql, db)
                    #expect(!plan.contains { $0.hasPrefix("SCAN messages") }, "\(sql): \(plan)")
                }
            }
        }
    }

    /// The index plan and the walk give what the in-memory journal gives, for every page size.
    @Test func wildcardReplayMatchesTheMemoryJournal() async throws {
        let sqlite = try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger)
        let memory = MemoryJournal(retention: RetentionPolicy(maxMessagesPerTopic: 100_000))
        var generator = SystemRandomNumberGenerator()
        let names = ["a/b/c", "a/b", "a", "a/x/c", "b/x", "$sys/x", "c/d/e/f", "a/b/c/d"] + (0..<30).map { "n/\($0)" }
        var topics: [String] = []
        for _ in 0..<1_000 { topics.append(names.randomElement(using: &generator)!) }
        for journal: any Journal in [sqlite, memory] {
            let picked = topics
            await Self.appendMany(journal, count: picked.count) { picked[$0] }
        }
        for filter in ["#", "a/#", "+/x", "a/+/c", "+/+", "n/+", "nothing/#", "$sys/#", "+/b/#"] {
            for selection: ReplaySelection in [.history(1), .history(3), .since(0), .since(700), .since(990)] {
                for pageSize in [3, 64] {
                    let expected = try await memory.replayAll(filter, selection, pageSize: pageSize).map(\.offset)
                    let got = try await sqlite.replayAll(filter, selection, pageSize: pageSize).map(\.offset)
                    #expect(got == expected, "\(filter) \(selection) page \(pageSize)")
                }
            }
        }
        await sqlite.close()
        await memory.close()
    }
}
