import BrokerJournal
import Logging
import PostgresNIO

/// Retention of the cluster journal: the same budgets as the SQLite journal's (`RetentionPolicy`:
/// messages per topic, age, bytes), applied in bounded passes by the writer.
///
/// One broker at a time prunes (`pg_try_advisory_xact_lock`; a broker that does not get the lock
/// skips its pass). A pass holds `broker_meta`'s row lock (the lock order every transaction
/// follows: meta, then topics), so the cluster's commits wait for it: passes are bounded. Each broker checks the counts of the topics it appended to; age and bytes are
/// journal-wide. A pass deletes at most `maxRemovalsPerPass` messages, raises the topics'
/// `pruned_through` and the meta counters in the same transaction, and drops the rows of the
/// topics left empty (`dropEmptyTopics`, as the SQLite journal's `Pruner` does).
///
/// The bytes budget is an estimate: payload bytes plus `rowOverheadBytes` per message (the heap
/// tuple header and line pointer, the fixed columns, the two index entries), not the database's
/// size on disk. It has to fall as messages are deleted, which `pg_total_relation_size` does not
/// (PostgreSQL reuses the space of deleted rows after a vacuum; it does not give it back), so a
/// budget on that size would prune everything once exceeded. Not counted: the topic name (in the
/// row and in the topic index) and dead rows not vacuumed yet, so it is a lower bound (about
/// 1.6x below the size PostgreSQL reports for 64-byte messages); docs/cluster.md ("Limits") has
/// the estimate next to the measured size.
///
/// Writer task only.
final class PostgresRetention: @unchecked Sendable {
    private let policy: RetentionPolicy
    private let clock: @Sendable () -> Int64
    private let logger: Logger
    private let maxRemovalsPerPass = 4_096
    private let topicsPerPass = 256
    static let rowOverheadBytes: Int64 = 96
    /// Topics the sweep for empty ones checks per pass (`dropEmptyTopics`).
    static let emptySweepPerPass = 64
    /// Topics appended to since their count was checked.
    private var dirty: Set<String> = []
    /// Where the sweep for empty topics resumes (a name; "" starts over).
    private var sweepAfter = ""

    init(policy: RetentionPolicy, clock: @escaping @Sendable () -> Int64, logger: Logger) {
        self.policy = policy
        self.clock = clock
        self.logger = logger
    }

    /// Whole milliseconds, saturating.
    static func milliseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        return overflow ? (seconds < 0 ? .min : .max) : ms.addingReportingOverflow(attoseconds / 1_000_000_000_000_000).partialValue
    }

    func noteAppends(to topics: [String]) {
        dirty.formUnion(topics)
    }

    private struct Victim {
        var topic: String
        var bytes: Int64
    }

    /// One pass; true when it stopped at a bound with more to do.
    func pass(_ client: PostgresClient) async throws -> Bool {
        let logger = self.logger
        let checked = Array(dirty.prefix(topicsPerPass))
        let now = clock()
        let result: (removed: Int, hasMore: Bool)? = try await client.withTransaction(logger: logger) { connection in
            var locked = false
            for try await value in try await connection.query(
                "SELECT pg_try_advisory_xact_lock(\(PostgresSchema.retentionLock))", logger: logger
            ).decode(Bool.self) {
                locked = value
            }
            guard locked else { return nil }
            // The meta row first, as the writer's groups take it first: taking the topics' rows
            // before it could deadlock with a group that holds it and adds a topic.
            try await connection.query("SELECT 1 FROM broker_meta FOR UPDATE", logger: logger)
            var victims: [Int64: Victim] = [:]
            var hasMore = false
            // By count: the oldest messages past each checked topic's limit.
            for topic in checked {
                let keep = max(0, policy.limits(for: topic).maxMessagesPerTopic)
                let budget = maxRemovalsPerPass - victims.count
                guard budget > 0 else { hasMore = true; break }
                for try await (offset, bytes) in try await connection.query("""
                    SELECT msg_offset, length(payload)::bigint FROM broker_messages WHERE topic = \(topic)
                        AND msg_offset <= coalesce((SELECT msg_offset FROM broker_messages WHERE topic = \(topic)
                            ORDER BY msg_offset DESC OFFSET \(keep) LIMIT 1), -1)
                    ORDER BY msg_offset LIMIT \(budget + 1)
                    """, logger: logger).decode((Int64, Int64).self) {
                    if victims.count == maxRemovalsPerPass { hasMore = true; break }
                    victims[offset] = Victim(topic: topic, bytes: bytes)
                }
            }
            // By age: walk from the oldest, stop at the first message young enough for every topic.
            let youngest = now - Self.milliseconds(policy.overrides.compactMap(\.maxAge).reduce(policy.maxAge, min))
            for try await (offset, topic, timestamp, bytes) in try await connection.query("""
                SELECT msg_offset, topic, timestamp_ms, length(payload)::bigint FROM broker_messages
                ORDER BY msg_offset LIMIT \(maxRemovalsPerPass)
                """, logger: logger).decode((Int64, String, Int64, Int64).self) {
                if timestamp >= youngest { break }
                if victims.count >= maxRemovalsPerPass { hasMore = true; break }
                if timestamp < now - Self.milliseconds(policy.limits(for: topic).maxAge) {
                    victims[offset] = Victim(topic: topic, bytes: bytes)
                }
            }
            // By bytes: the oldest messages until the estimate fits the budget.
            var used: Int64 = 0, messages: Int64 = 0
            for try await (count, bytes) in try await connection.query(
                "SELECT message_count, payload_bytes FROM broker_meta", logger: logger
            ).decode((Int64, Int64).self) {
                messages = count
                used = bytes + count * Self.rowOverheadBytes
            }
            if used > policy.maxBytes, messages > 0 {
                var excess = used - policy.maxBytes
                for try await (offset, topic, bytes) in try await connection.query("""
                    SELECT msg_offset, topic, length(payload)::bigint FROM broker_messages
                    ORDER BY msg_offset LIMIT \(maxRemovalsPerPass)
                    """, logger: logger).decode((Int64, String, Int64).self) {
                    guard excess > 0 else { break }
                    if victims.count >= maxRemovalsPerPass { hasMore = true; break }
                    if victims[offset] == nil {
                        victims[offset] = Victim(topic: topic, bytes: bytes)
                    }
                    excess -= bytes + Self.rowOverheadBytes
                }
                if excess > 0 { hasMore = true }
            }
            // Empty topics: those this pass empties, and a slow sweep over the others (a clear
            // leaves a topic whose rows cannot go yet, see `dropEmptyTopics`).
            var sweep: [String] = []
            for try await name in try await connection.query(
                "SELECT name FROM broker_topics WHERE name > \(self.sweepAfter) ORDER BY name LIMIT \(Self.emptySweepPerPass)",
                logger: logger
            ).decode(String.self) {
                sweep.append(name)
            }
            self.sweepAfter = sweep.count == Self.emptySweepPerPass ? sweep.last! : ""
            guard !victims.isEmpty else {
                try await Self.dropEmptyTopics(sweep, connection, logger: logger)
                return (0, hasMore)
            }
            var highest: [String: Int64] = [:]
            for (offset, victim) in victims { highest[victim.topic] = max(highest[victim.topic] ?? 0, offset) }
            let offsets = Array(victims.keys)
            let bytes = victims.values.reduce(0) { $0 + $1.bytes }
            try await connection.query(
                "DELETE FROM broker_messages WHERE msg_offset = ANY(\(offsets)::bigint[])", logger: logger)
            try await connection.query("""
                UPDATE broker_topics AS t SET pruned_through = greatest(t.pruned_through, v.last)
                FROM unnest(\(Array(highest.keys))::text[], \(Array(highest.values))::bigint[]) AS v(name, last)
                WHERE t.name = v.name
                """, logger: logger)
            try await connection.query("""
                UPDATE broker_meta SET message_count = message_count - \(Int64(victims.count)),
                    payload_bytes = payload_bytes - \(bytes), pruned_messages = pruned_messages + \(Int64(victims.count))
                """, logger: logger)
            try await Self.dropEmptyTopics(Array(highest.keys) + sweep, connection, logger: logger)
            return (victims.count, hasMore)
        }
        guard let result else { return false }
        if !result.hasMore { for topic in checked { dirty.remove(topic) } }
        if result.removed > 0 {
            logger.info("journal pruned retained messages", metadata: ["removed": "\(result.removed)"])
        }
        return result.hasMore || !dirty.isEmpty
    }

    /// Deletes the rows of the topics among `names` that hold no message and whose
    /// `pruned_through` is older than every message kept (so no resume from a kept offset can ask
    /// about them), and raises `broker_meta.forgotten_through` to the highest of those, so that
    /// `prunedAfter` still answers for them (`PostgresQueries.prunedAfter`). The SQLite journal
    /// does the same (`Pruner`). A later append to such a topic adds its row again. In a
    /// transaction holding `broker_meta`'s row lock (clear or retention), as every writer's group
    /// takes it before adding topics.
    static func dropEmptyTopics(_ names: [String], _ connection: PostgresConnection, logger: Logger) async throws {
        guard !names.isEmpty else { return }
        try await connection.query("""
            WITH oldest AS (
                SELECT coalesce(min(msg_offset), 9223372036854775807) AS kept FROM broker_messages
            ), dropped AS (
                DELETE FROM broker_topics AS t USING oldest
                WHERE t.name = ANY(\(names)::text[]) AND t.pruned_through < oldest.kept
                    AND NOT EXISTS (SELECT 1 FROM broker_messages AS m WHERE m.topic = t.name)
                RETURNING t.pruned_through
            )
            UPDATE broker_meta SET forgotten_through = greatest(forgotten_through,
                (SELECT coalesce(max(pruned_through), 0) FROM dropped))
            """, logger: logger)
    }
}
