import BrokerJournal
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

@testable import BrokerJournalPostgres

/// The cluster journal's retention against a real PostgreSQL, looking at its tables: topic rows
/// dropped as the SQLite journal drops them, and what the bytes budget counts next to what
/// PostgreSQL stores.
@Suite(postgresAvailable) struct PostgresRetentionTests {
    /// A fresh database: its URL and its name (for `PostgresServer.query`).
    private func database() async throws -> (url: PostgresURL, name: String) {
        let url = try await makePostgresDatabase()
        return (url, url.database)
    }

    private func query(_ sql: String, _ database: String) async throws -> String {
        try await PostgresServer.shared().query(sql, database: database)
    }

    /// Retention runs only when a test applies it: the writer's own pass (every second) would
    /// otherwise sweep a row between two of the test's looks (it did, once in a run of 73 tests).
    private var manualRetention: JournalConfiguration {
        var configuration = JournalConfiguration()
        configuration.pruneInterval = .seconds(3_600)
        return configuration
    }

    @Test func aClearedTopicLosesItsRowOnceEverythingBeforeItIsGone() async throws {
        let (url, name) = try await database()
        let journal = try await openPostgresJournal(url, configuration: manualRetention)
        for topic in ["gone", "gone", "a", "kept", "a"] { _ = try await journal.append(topic, topic) }
        // "gone" (1...2) is older than every message kept: its row goes with the clear.
        #expect(try await journal.clear(filter: "gone", on: loop).get() == 2)
        #expect(try await query("SELECT name FROM broker_topics ORDER BY name", name) == "a\nkept")
        #expect(try await query("SELECT forgotten_through FROM broker_meta", name) == "2")
        // "a" (3 and 5) was pruned through 5, after "kept" (4): its row must stay for a client
        // that resumes from 4.
        #expect(try await journal.clear(filter: "a", on: loop).get() == 2)
        #expect(try await query("SELECT name FROM broker_topics ORDER BY name", name) == "a\nkept")
        #expect(try await journal.prunedAfter(4, filter: "a", on: loop).get())
        #expect(try await !journal.prunedAfter(4, filter: "kept", on: loop).get())
        // Once "kept" is cleared too, nothing is kept: the clear drops "kept", the retention
        // pass's sweep drops "a".
        #expect(try await journal.clear(filter: "kept", on: loop).get() == 1)
        #expect(try await query("SELECT name FROM broker_topics ORDER BY name", name) == "a")
        await journal.applyRetention()
        #expect(try await query("SELECT count(*) FROM broker_topics", name) == "0")
        #expect(try await query("SELECT forgotten_through FROM broker_meta", name) == "5")
        // Resumes answer as before the rows went; a forgotten name counts for every filter.
        #expect(try await journal.prunedAfter(4, filter: "a", on: loop).get())
        #expect(try await journal.prunedAfter(4, filter: "other/#", on: loop).get())
        #expect(try await !journal.prunedAfter(5, filter: "#", on: loop).get())
        // A dropped topic comes back with its next message, and is counted and pruned again.
        #expect(try await journal.append("a", "again") == 6)
        #expect(try await journal.stats().topics == 1)
        #expect(try await journal.clear(filter: "a", on: loop).get() == 1)
        #expect(try await journal.prunedAfter(5, filter: "a", on: loop).get())
        await journal.close()
    }

    @Test func retentionDropsTheRowsOfTopicsItEmpties() async throws {
        let (url, name) = try await database()
        let clock = TestClock(1_000_000)
        var configuration = JournalConfiguration(retention: RetentionPolicy(maxAge: .seconds(60)))
        configuration.clock = { clock.read() }
        let journal = try await openPostgresJournal(url, configuration: configuration)
        for index in 1...5 { _ = try await journal.append("old/\(index)", "x") }
        clock.advance(by: 61_000)
        _ = try await journal.append("new", "fresh")
        await journal.applyRetention()
        #expect(try await query("SELECT name FROM broker_topics", name) == "new")
        #expect(try await query("SELECT forgotten_through FROM broker_meta", name) == "5")
        #expect(try await journal.prunedAfter(0, filter: "old/+", on: loop).get())
        #expect(try await !journal.prunedAfter(5, filter: "#", on: loop).get())
        await journal.close()
    }

    @Test func aJournalOfSchemaVersionOneIsMigrated() async throws {
        let (url, name) = try await database()
        var journal = try await openPostgresJournal(url)
        _ = try await journal.append("t", "x")
        await journal.close()
        // Back to version 1, as a broker of the previous release left it.
        try await PostgresServer.shared().execute("""
            ALTER TABLE broker_meta DROP COLUMN forgotten_through;
            UPDATE broker_meta SET schema_version = 1;
            DELETE FROM broker_schema_migrations WHERE version = 2;
            """, database: name)
        journal = try await openPostgresJournal(url)
        #expect(try await query("SELECT schema_version, forgotten_through FROM broker_meta", name) == "2|0")
        #expect(try await journal.append("t", "y") == 2)
        await journal.close()
    }

    /// The bytes budget counts payload bytes plus `rowOverheadBytes` per message (it must fall
    /// as messages are deleted, which the relations' size does not: PostgreSQL reuses freed
    /// space, it does not give it back). Next to what PostgreSQL reports for the messages
    /// table with its indexes and TOAST after a VACUUM, the estimate is a lower bound, within a
    /// factor of two, for small and large (incompressible) payloads: docs/cluster.md ("Limits")
    /// gives the figures and tells operators to budget the disk with that margin.
    @Test func theBytesEstimateStaysNearPostgreSQLsSize() async throws {
        for (payloadSize, messages) in [(64, 4_000), (4_096, 400)] {
            let (url, name) = try await database()
            let journal = try await openPostgresJournal(url)
            // Payloads that do not compress (TOAST would otherwise shrink the large ones).
            try await withThrowingTaskGroup(of: Void.self) { group in
                for publisher in 0..<8 {
                    group.addTask {
                        var random = SystemRandomNumberGenerator()
                        for index in 0..<(messages / 8) {
                            let text = String((0..<payloadSize).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement(using: &random)! })
                            _ = try await journal.append("sensors/room-\(publisher)/reading-\(index % 50)", text)
                        }
                    }
                }
                try await group.waitForAll()
            }
            try await PostgresServer.shared().execute("VACUUM ANALYZE broker_messages", database: name)
            let stored = Double(try await query("SELECT pg_total_relation_size('broker_messages')", name)) ?? 0
            let stats = try await journal.stats()
            let estimate = Double(stats.bytes) + Double(stats.messages) * Double(PostgresRetention.rowOverheadBytes)
            print("retention bytes: \(messages) messages of \(payloadSize) B: estimate \(Int(estimate)) B, PostgreSQL \(Int(stored)) B (\(String(format: "%.2f", stored / estimate))x)")
            #expect(stats.messages == messages)
            #expect(stored >= estimate && stored < estimate * 2, "estimate \(estimate) B, stored \(stored) B")
            await journal.close()
        }
    }
}
