import Foundation
import GRDB

/// The journal's tables, their migrations, and the checks that refuse a file we must not touch.
///
/// Tables:
/// - `meta`: one row: `epoch` (random, made with the journal), `schema_version`, and the counters
///   the writer keeps in step with every commit: `last_offset` (highest offset ever assigned, so
///   offsets are never reused even when every message was pruned), `message_count`,
///   `payload_bytes`, `pruned_messages`; and `forgotten_through` (v2), the highest
///   `pruned_through` of the topics whose rows retention deleted (see `Pruner`).
/// - `topics`: `id`, `name` (unique), `pruned_through` (highest offset retention or clearing ever
///   removed from the topic). A topic with no messages left loses its row (retention passes).
/// - `messages`: `offset` (the rowid), `topic_id`, `payload`, `is_binary`, `timestamp_ms`, indexed
///   by `(topic_id, offset)`.
enum Schema {
    /// The schema this code writes; a file with a higher one is refused.
    static let version = 2

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE meta (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    epoch TEXT NOT NULL,
                    schema_version INTEGER NOT NULL,
                    last_offset INTEGER NOT NULL DEFAULT 0,
                    message_count INTEGER NOT NULL DEFAULT 0,
                    payload_bytes INTEGER NOT NULL DEFAULT 0,
                    pruned_messages INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE topics (
                    id INTEGER PRIMARY KEY,
                    name TEXT NOT NULL UNIQUE,
                    pruned_through INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE messages (
                    offset INTEGER PRIMARY KEY,
                    topic_id INTEGER NOT NULL,
                    payload BLOB NOT NULL,
                    is_binary INTEGER NOT NULL,
                    timestamp_ms INTEGER NOT NULL
                );
                CREATE INDEX messages_by_topic ON messages(topic_id, offset);
                """)
            try db.execute(
                sql: "INSERT INTO meta (id, epoch, schema_version) VALUES (1, ?, 1)",
                arguments: [makeEpoch()])
        }
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                ALTER TABLE meta ADD COLUMN forgotten_through INTEGER NOT NULL DEFAULT 0;
                UPDATE meta SET schema_version = 2;
                """)
        }
        return migrator
    }

    /// 16 random hex digits.
    static func makeEpoch() -> String {
        let digits = String(UInt64.random(in: .min ... .max), radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Refuses an existing file that is unreadable or not a SQLite database, before SQLite opens
    /// it (opening never writes to it then). An empty or missing file is fine: it becomes a new
    /// journal.
    static func checkFile(at path: String) throws(JournalError) {
        guard FileManager.default.fileExists(atPath: path) else { return }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .unusable("cannot read \(path)")
        }
        defer { try? handle.close() }
        let header: Data
        do {
            header = try handle.read(upToCount: 16) ?? Data()
        } catch {
            throw .unusable("cannot read \(path): \(error)")
        }
        if header.isEmpty { return }
        if header != Data("SQLite format 3\0".utf8) {
            throw .unusable("\(path) is not a SQLite database; refusing to touch it")
        }
    }

    /// The connections' configuration for the durability asked for.
    static func configuration(durability: JournalDurability) -> Configuration {
        var configuration = Configuration()
        configuration.label = "broker-journal"
        configuration.busyMode = .timeout(10)
        configuration.maximumReaderCount = 4
        let synchronous = durability == .full ? "FULL" : "NORMAL"
        configuration.prepareDatabase { db in
            // A new database gets incremental auto-vacuum, so that retention can give free pages
            // back to the file system (`Pruner`). Only possible before the first table exists,
            // which is why it comes before GRDB switches the writer's connection to WAL; on an
            // existing database without it SQLite ignores the pragma (changing it needs VACUUM).
            if !db.configuration.readonly {
                try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            }
            try db.execute(sql: "PRAGMA synchronous = \(synchronous)")
            // The WAL file keeps the largest size it reached (tens of MB under a sustained
            // stream, see WALCheckpointer); cut it back when it starts over.
            try db.execute(sql: "PRAGMA journal_size_limit = \(32 << 20)")
        }
        return configuration
    }

    /// Opens the pool in WAL mode with the durability asked for.
    static func openPool(at path: String, durability: JournalDurability) throws(JournalError) -> DatabasePool {
        do {
            let pool = try DatabasePool(path: path, configuration: configuration(durability: durability))
            // GRDB sets `synchronous = NORMAL` when it switches the writer to WAL, after
            // `prepareDatabase`: say it again on the writer, where it decides when a commit is
            // on disk (DurabilityTests).
            let synchronous = durability == .full ? "FULL" : "NORMAL"
            try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = \(synchronous)") }
            return pool
        } catch {
            throw .unusable("cannot open \(path) as a journal: \(Self.reason(error))")
        }
    }

    /// Refuses a database that is not a journal or is newer than ours. Reads through a read-only
    /// connection, so nothing is written to a file that is refused (opening the pool would already
    /// switch it to WAL).
    static func inspect(at path: String) throws(JournalError) {
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        guard size > 0 else { return }
        var configuration = Configuration()
        configuration.readonly = true
        let migrator = Self.migrator
        let refusal: String?
        do {
            refusal = try DatabaseQueue(path: path, configuration: configuration).read { db in
                let tables = try String.fetchAll(db, sql: """
                    SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                    """)
                if tables.isEmpty { return nil }
                guard tables.contains("meta") else {
                    return "\(path) is a SQLite database but not a broker journal; refusing to touch it"
                }
                let version = try Int.fetchOne(db, sql: "SELECT schema_version FROM meta") ?? 0
                if try version > Schema.version || migrator.hasBeenSuperseded(db) {
                    return "\(path) has journal schema version \(version), newer than this broker's \(Schema.version); upgrade the broker"
                }
                return nil
            }
        } catch {
            throw .unusable("cannot read \(path) as a journal: \(Self.reason(error))")
        }
        if let refusal { throw .unusable(refusal) }
    }

    /// Applies pending migrations (creating the schema and epoch of a new journal).
    static func migrate(_ pool: DatabasePool, path: String) throws(JournalError) {
        do {
            try migrator.migrate(pool)
        } catch {
            throw .unusable("cannot migrate \(path): \(Self.reason(error))")
        }
    }

    /// One line for people out of a GRDB or SQLite error.
    static func reason(_ error: any Error) -> String {
        if let error = error as? DatabaseError {
            return error.message ?? "\(error.resultCode)"
        }
        return "\(error)"
    }
}

/// The `meta` row as the writer loads it at open.
struct JournalMeta: Sendable {
    var epoch: String
    var lastOffset: UInt64
    var messageCount: Int
    var payloadBytes: Int64
    var prunedMessages: Int

    static func load(_ db: Database) throws -> JournalMeta {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT epoch, last_offset, message_count, payload_bytes, pruned_messages,
                   (SELECT MAX(offset) FROM messages) AS max_offset
            FROM meta
            """) else {
            throw JournalError.unusable("journal has no meta row")
        }
        let lastOffset: Int64 = row["last_offset"]
        let maxOffset: Int64 = row["max_offset"] ?? 0
        return JournalMeta(
            epoch: row["epoch"],
            lastOffset: UInt64(max(lastOffset, maxOffset)),
            messageCount: row["message_count"],
            payloadBytes: row["payload_bytes"],
            prunedMessages: row["pruned_messages"])
    }

    /// Writes the counters back; runs inside the writer's transactions.
    func save(_ db: Database) throws {
        let statement = try db.cachedStatement(sql: """
            UPDATE meta SET last_offset = ?, message_count = ?, payload_bytes = ?, pruned_messages = ?
            """)
        try statement.execute(arguments: [Int64(lastOffset), messageCount, payloadBytes, prunedMessages])
    }
}
