import BrokerJournal
import Logging
import PostgresNIO

/// The cluster journal's tables in PostgreSQL and their migrations.
///
/// - `broker_meta`: one row: `epoch` (random, made with the journal), `schema_version`,
///   `last_offset` (the highest offset ever assigned; its row lock is what serializes the
///   brokers' commits, see `PostgresWriter`), `message_count`, `payload_bytes`,
///   `pruned_messages`; and `forgotten_through` (v2), the highest `pruned_through` of the topics
///   whose rows were deleted (`PostgresRetention.dropEmptyTopics`, as the SQLite journal's
///   `meta.forgotten_through`).
/// - `broker_topics`: `name`, `pruned_through` (the highest offset retention or clearing ever
///   removed from the topic). A topic with no message left loses its row once its
///   `pruned_through` is older than every message kept.
/// - `broker_messages`: `msg_offset` (primary key), `topic`, `payload`, `is_binary`,
///   `timestamp_ms`, indexed by `(topic, msg_offset)`.
///
/// Migrations run in one transaction under an advisory lock, so brokers starting together apply
/// each once; a database with a newer schema than ours is refused untouched.
enum PostgresSchema {
    static let version = 2
    /// `pg_advisory_xact_lock` keys (any constants, fixed forever).
    static let migrationLock: Int64 = 0x6272_6f6b_6572_0001
    static let retentionLock: Int64 = 0x6272_6f6b_6572_0002

    static let migrations: [Int: [PostgresQuery]] = [
        1: [
            """
            CREATE TABLE broker_meta (
                id integer PRIMARY KEY CHECK (id = 1),
                epoch text NOT NULL,
                schema_version integer NOT NULL,
                last_offset bigint NOT NULL DEFAULT 0,
                message_count bigint NOT NULL DEFAULT 0,
                payload_bytes bigint NOT NULL DEFAULT 0,
                pruned_messages bigint NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE broker_topics (
                name text PRIMARY KEY,
                pruned_through bigint NOT NULL DEFAULT 0
            )
            """,
            """
            CREATE TABLE broker_messages (
                msg_offset bigint PRIMARY KEY,
                topic text NOT NULL,
                payload bytea NOT NULL,
                is_binary boolean NOT NULL,
                timestamp_ms bigint NOT NULL
            )
            """,
            "CREATE INDEX broker_messages_by_topic ON broker_messages (topic, msg_offset)",
        ],
        2: [
            "ALTER TABLE broker_meta ADD COLUMN forgotten_through bigint NOT NULL DEFAULT 0",
        ],
    ]

    /// Applies the pending migrations and returns the journal's epoch.
    static func migrate(_ client: PostgresClient, logger: Logger) async throws -> String {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(migrationLock))", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS broker_schema_migrations (version integer PRIMARY KEY)", logger: logger)
            var applied = 0
            for try await version in try await connection.query(
                "SELECT coalesce(max(version), 0) FROM broker_schema_migrations", logger: logger
            ).decode(Int.self) {
                applied = version
            }
            if applied > version {
                throw JournalError.unusable(
                    "the cluster journal has schema version \(applied), newer than this broker's \(version); upgrade the broker")
            }
            for next in (applied + 1)...max(applied + 1, version) where next <= version {
                for statement in migrations[next] ?? [] { try await connection.query(statement, logger: logger) }
                if next == 1 {
                    let epoch = makeJournalEpoch()
                    try await connection.query(
                        "INSERT INTO broker_meta (id, epoch, schema_version) VALUES (1, \(epoch), 1)", logger: logger)
                }
                try await connection.query(
                    "UPDATE broker_meta SET schema_version = \(next)", logger: logger)
                try await connection.query(
                    "INSERT INTO broker_schema_migrations (version) VALUES (\(next))", logger: logger)
                logger.info("cluster journal migrated", metadata: ["schema_version": "\(next)"])
            }
            var epoch = ""
            for try await value in try await connection.query("SELECT epoch FROM broker_meta", logger: logger).decode(String.self) {
                epoch = value
            }
            return epoch
        }
    }
}
