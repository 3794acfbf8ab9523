import BrokerJournal
import Foundation
import GRDB
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Reopening, locking and refusing files that are not ours.
@Suite struct LifecycleTests {
    @Test func offsetsAndEpochSurviveReopen() async throws {
        let directory = makeTemporaryDirectory()
        var journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        let epoch = journal.epoch
        #expect(epoch.count == 16)
        for expected in UInt64(1)...5 {
            #expect(try await journal.append("a/\(expected)", "v\(expected)") == expected)
        }
        await journal.close()

        journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        #expect(journal.epoch == epoch)
        #expect(await journal.snapshot() == 5)
        #expect(try await journal.replayAll("a/+", .since(0)).map(\.text) == ["v1", "v2", "v3", "v4", "v5"])
        #expect(try await journal.append("a/1", "v6") == 6)
        await journal.close()
    }

    @Test func offsetsAreNotReusedAfterEverythingWasRemoved() async throws {
        let directory = makeTemporaryDirectory()
        var journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        for _ in 0..<10 { _ = try await journal.append("t", "x") }
        #expect(try await journal.clear(filter: "#", on: loop).get() == 10)
        #expect(try await journal.stats().messages == 0)
        await journal.close()

        journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        #expect(try await journal.append("t", "y") == 11)
        await journal.close()

        // And after retention removed everything.
        let tiny = JournalConfiguration(retention: RetentionPolicy(maxMessagesPerTopic: 0), pruneInterval: .milliseconds(1))
        journal = try SQLiteJournal.open(directory: directory, configuration: tiny, logger: quietLogger)
        #expect(try await journal.append("t", "z") == 12)
        await journal.applyRetention()
        #expect(try await journal.stats().messages == 0)
        await journal.close()
        journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        #expect(try await journal.append("t", "w") == 13)
        await journal.close()
    }

    /// The writer's connection does not checkpoint (WALCheckpointer does, on its own thread):
    /// pages must still reach the database file while the journal is open, and nothing may be
    /// lost to checkpoints running beside the commits.
    @Test func walIsCheckpointedInTheBackgroundWithoutLosingAppends() async throws {
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        let payload = String(repeating: "x", count: 1_024)
        func size(_ file: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: directory + "/" + file))?[.size] as? Int) ?? 0
        }
        let before = size("journal.sqlite")
        // 8 MiB through the WAL: twice the 1,000 pages that wake the checkpointer.
        for _ in 0..<8 {
            try await withThrowingTaskGroup(of: UInt64.self) { group in
                for index in 0..<1_024 { group.addTask { try await journal.append("t/\(index % 16)", payload) } }
                try await group.waitForAll()
            }
        }
        #expect(try await eventually { size("journal.sqlite") - before > 4 << 20 })
        await journal.close()
        let reopened = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        let stats = try await reopened.stats()
        #expect(stats.messages == 8 * 1_024 && stats.lastOffset == 8 * 1_024)
        await reopened.close()
    }

    @Test func secondOpenOfTheSameDirectoryIsRefused() async throws {
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        #expect(throws: JournalError.locked(path: directory)) {
            _ = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        }
        await journal.close()
        let again = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        await again.close()
    }

    @Test func createsAMissingDirectory() async throws {
        let directory = makeTemporaryDirectory() + "/nested/data"
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        #expect(FileManager.default.fileExists(atPath: directory + "/journal.sqlite"))
        await journal.close()
    }

    @Test func garbageFileIsRefusedAndLeftUntouched() throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/journal.sqlite"
        let garbage = Data((0..<4_096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        try garbage.write(to: URL(fileURLWithPath: path))
        do {
            _ = try SQLiteJournal.open(directory: directory, logger: quietLogger)
            Issue.record("opened a garbage file")
        } catch {
            guard case .unusable(let reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(reason.contains("not a SQLite database"))
            #expect(!reason.contains("\n"))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == garbage)
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func foreignSQLiteDatabaseIsRefused() throws {
        let directory = makeTemporaryDirectory()
        let path = directory + "/journal.sqlite"
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(throws: JournalError.self) { _ = try SQLiteJournal.open(directory: directory, logger: quietLogger) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test func newerSchemaIsRefused() async throws {
        let directory = makeTemporaryDirectory()
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        _ = try await journal.append("t", "x")
        await journal.close()
        try await DatabaseQueue(path: directory + "/journal.sqlite").write { db in
            try db.execute(sql: "UPDATE meta SET schema_version = 99")
        }
        do {
            _ = try SQLiteJournal.open(directory: directory, logger: quietLogger)
            Issue.record("opened a newer schema")
        } catch {
            guard case .unusable(let reason) = error else { Issue.record("unexpected \(error)"); return }
            #expect(reason.contains("newer"))
        }
        // A migration this build does not know is refused the same way.
        try await DatabaseQueue(path: directory + "/journal.sqlite").write { db in
            try db.execute(sql: "UPDATE meta SET schema_version = 1")
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v3')")
        }
        #expect(throws: JournalError.self) { _ = try SQLiteJournal.open(directory: directory, logger: quietLogger) }
    }

    static func mode(_ path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) & 0o777
    }

    /// The data directory the journal creates is 0700 and its files 0600, whatever the umask;
    /// files left readable by an older broker are made 0600, an existing directory is left alone.
    @Test func dataDirectoryIsPrivate() async throws {
        let directory = makeTemporaryDirectory() + "/data/journal"
        let journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        _ = try await journal.append("t", "x")
        let files = ["journal.sqlite", "journal.sqlite-wal", "journal.sqlite-shm", "broker.lock"].map { directory + "/" + $0 }
        #expect(try Self.mode(directory) == 0o700)
        for file in files { #expect(try Self.mode(file) == 0o600, "\(file)") }
        await journal.close()

        // As an older broker left them: everything readable by all.
        #expect(chmod(directory, 0o755) == 0)
        let left = files.filter { FileManager.default.fileExists(atPath: $0) }
        for file in left { #expect(chmod(file, 0o644) == 0) }
        let reopened = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        _ = try await reopened.append("t", "y")
        for file in files { #expect(try Self.mode(file) == 0o600, "\(file)") }
        #expect(try Self.mode(directory) == 0o755)  // warned about, not changed
        await reopened.close()
    }

    @Test func unreadableDirectoryIsRefused() throws {
        let file = makeTemporaryDirectory() + "/not-a-directory"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        #expect(throws: JournalError.self) { _ = try SQLiteJournal.open(directory: file, logger: quietLogger) }
    }
}
