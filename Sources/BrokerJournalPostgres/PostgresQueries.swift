import BrokerJournal
import BrokerProtocol
import Logging
import NIOCore
import PostgresNIO

/// The cluster journal's reads. Each is one statement (or a few for a wildcard's topics), so each
/// sees committed data only; offsets become visible in order (see `PostgresWriter`), so a read
/// bounded by a snapshot's high-water mark sees every message up to it.
enum PostgresQueries {
    static let logger = Logger(label: "broker.journal.postgres.queries", factory: { _ in SwiftLogNoOpLogHandler() })

    struct Row: Sendable {
        var offset: UInt64
        var topic: String
        var payload: ByteBuffer
        var isBinary: Bool
        var timestampMilliseconds: Int64

        var record: RetainedRecord {
            RetainedRecord(offset: offset, topic: topic, payload: payload, isBinary: isBinary, timestampMilliseconds: timestampMilliseconds)
        }
    }

    private static func rows(_ sequence: PostgresRowSequence) async throws -> [Row] {
        var rows: [Row] = []
        for try await (offset, topic, payload, isBinary, timestamp) in sequence.decode((Int64, String, ByteBuffer, Bool, Int64).self) {
            rows.append(Row(offset: UInt64(offset), topic: topic, payload: payload, isBinary: isBinary, timestampMilliseconds: timestamp))
        }
        return rows
    }

    static func lastOffset(_ client: PostgresClient) async throws -> UInt64 {
        var last: Int64 = 0
        for try await value in try await client.query("SELECT last_offset FROM broker_meta", logger: logger).decode(Int64.self) {
            last = value
        }
        return UInt64(last)
    }

    /// The rows with these offsets (those still kept).
    static func rows(at offsets: [UInt64], _ client: PostgresClient) async throws -> [Row] {
        let offsets = offsets.map { Int64(clamping: $0) }
        return try await rows(try await client.query("""
            SELECT msg_offset, topic, payload, is_binary, timestamp_ms FROM broker_messages
            WHERE msg_offset = ANY(\(offsets)::bigint[]) ORDER BY msg_offset
            """, logger: logger))
    }

    /// Up to `limit` rows in `(after, through]`, in offset order.
    static func rows(after: UInt64, through: UInt64, limit: Int, _ client: PostgresClient) async throws -> [Row] {
        try await rows(try await client.query("""
            SELECT msg_offset, topic, payload, is_binary, timestamp_ms FROM broker_messages
            WHERE msg_offset > \(Int64(clamping: after)) AND msg_offset <= \(Int64(clamping: through))
            ORDER BY msg_offset LIMIT \(limit)
            """, logger: logger))
    }

    /// The literal levels of `filter` before its first wildcard, as a `LIKE` prefix pattern.
    static func likePrefix(of filter: String) -> String {
        // Levels cut on bytes: a character-wise split misses a `/` followed by a combining mark.
        let levels = Topic.levels(of: filter)
        var literal: [Substring] = []
        for level in levels {
            if level == "+" || level == "#" { break }
            literal.append(level)
        }
        var prefix = literal.joined(separator: "/")
        if literal.count < levels.count, !literal.isEmpty {
            prefix += "/"
        }
        // `#` also matches the parent level (`a/#` matches `a`): cut the trailing slash.
        if prefix.hasSuffix("/") { prefix.removeLast() }
        let escaped = prefix.replacingOccurrences(of: "\\", with: "\\\\")
            .replacingOccurrences(of: "%", with: "\\%").replacingOccurrences(of: "_", with: "\\_")
        return escaped + "%"
    }

    /// The names of the known topics matching `filter` (its wildcards resolved on `broker_topics`).
    static func topics(matching filter: String, _ connection: PostgresConnection, logger: Logger) async throws -> [String] {
        guard Topic.isWildcard(filter) else { return [filter] }
        var names: [String] = []
        for try await name in try await connection.query(
            "SELECT name FROM broker_topics WHERE name LIKE \(likePrefix(of: filter))", logger: logger
        ).decode(String.self) where Topic.matches(filter: filter, name: name) {
            names.append(name)
        }
        return names
    }

    static func topics(matching filter: String, _ client: PostgresClient) async throws -> [String] {
        try await client.withConnection { connection in try await topics(matching: filter, connection, logger: logger) }
    }

    /// One page of a replay; see `ReplayQuery`. The filter's topics are resolved first; then
    /// `since` reads them through the primary key in offset order, and `history(N)` takes each
    /// topic's newest N up to `upTo` through the `(topic, msg_offset)` index.
    static func replayPage(_ query: ReplayQuery, _ client: PostgresClient) async throws -> ReplayPage {
        guard let (lower, newest, limit) = query.pageBounds else { return ReplayPage(records: [], isLast: true) }
        let names = try await topics(matching: query.filter, client)
        guard !names.isEmpty else { return ReplayPage(records: [], isLast: true) }
        let after = Int64(clamping: lower), upTo = Int64(clamping: query.upTo)
        let found: [Row]
        if let newest {
            found = try await rows(try await client.query("""
                SELECT m.msg_offset, m.topic, m.payload, m.is_binary, m.timestamp_ms
                FROM unnest(\(names)::text[]) AS t(name)
                CROSS JOIN LATERAL (
                    SELECT * FROM broker_messages WHERE topic = t.name AND msg_offset <= \(upTo)
                    ORDER BY msg_offset DESC LIMIT \(newest)
                ) AS m
                WHERE m.msg_offset > \(after) ORDER BY m.msg_offset LIMIT \(limit + 1)
                """, logger: logger))
        } else {
            found = try await rows(try await client.query("""
                SELECT msg_offset, topic, payload, is_binary, timestamp_ms FROM broker_messages
                WHERE topic = ANY(\(names)::text[]) AND msg_offset > \(after) AND msg_offset <= \(upTo)
                ORDER BY msg_offset LIMIT \(limit + 1)
                """, logger: logger))
        }
        return ReplayPage(records: found.prefix(limit).map(\.record), isLast: found.count <= limit)
    }

    /// Whether retention or clearing removed a message after `offset` on a topic matching `filter`.
    /// The topics whose rows were dropped are no longer known by name: a `forgotten_through` after
    /// `offset` answers true for every filter (it is older than every message kept, so only a
    /// client resuming from before the journal's oldest message is told so without cause), as in
    /// the SQLite journal.
    static func prunedAfter(_ offset: UInt64, filter: String, _ client: PostgresClient) async throws -> Bool {
        let after = Int64(clamping: offset)
        for try await forgotten in try await client.query(
            "SELECT forgotten_through FROM broker_meta", logger: logger
        ).decode(Int64.self) where forgotten > after {
            return true
        }
        let query: PostgresQuery = Topic.isWildcard(filter)
            ? "SELECT name FROM broker_topics WHERE pruned_through > \(after) AND name LIKE \(likePrefix(of: filter))"
            : "SELECT name FROM broker_topics WHERE pruned_through > \(after) AND name = \(filter)"
        for try await name in try await client.query(query, logger: logger).decode(String.self)
        where Topic.matches(filter: filter, name: name) {
            return true
        }
        return false
    }

    /// One page of the topics holding messages, in byte order of their names (`COLLATE "C"`, as
    /// SQLite's and the memory journal's pages are), one more than asked to know whether more follow.
    static func retainedTopics(_ query: RetainedTopicsQuery, _ client: PostgresClient) async throws -> RetainedTopicsPage {
        let after = query.after ?? ""
        let prefix = query.prefix
        let fetch = Int64(max(query.limit, 0)) + 1
        let rows = try await client.query("""
            SELECT t.name, s.n, s.last
            FROM broker_topics t
            CROSS JOIN LATERAL (
                SELECT count(*) AS n, coalesce(max(m.msg_offset), 0) AS last FROM broker_messages m WHERE m.topic = t.name
            ) s
            WHERE s.n > 0 AND t.name COLLATE "C" > \(after) AND starts_with(t.name, \(prefix))
            ORDER BY t.name COLLATE "C"
            LIMIT \(fetch)
            """, logger: logger)
        var topics: [RetainedTopic] = []
        for try await (name, count, last) in rows.decode((String, Int64, Int64).self) {
            topics.append(RetainedTopic(topic: name, messages: Int(count), lastOffset: UInt64(last)))
        }
        let isLast = topics.count <= query.limit
        if !isLast { topics.removeLast() }
        return RetainedTopicsPage(topics: topics, isLast: isLast)
    }

    static func stats(_ client: PostgresClient) async throws -> JournalStats {
        let rows = try await client.query("""
            SELECT message_count, payload_bytes, last_offset, pruned_messages,
                coalesce((SELECT min(msg_offset) FROM broker_messages), 0),
                (SELECT count(*) FROM broker_topics t WHERE EXISTS (SELECT 1 FROM broker_messages m WHERE m.topic = t.name))
            FROM broker_meta
            """, logger: logger)
        for try await (messages, bytes, last, pruned, first, topics) in rows.decode((Int64, Int64, Int64, Int64, Int64, Int64).self) {
            return JournalStats(
                messages: Int(messages), topics: Int(topics), bytes: Int(bytes), firstOffset: UInt64(first),
                lastOffset: UInt64(last), prunedMessages: Int(pruned))
        }
        throw JournalError.failed("the cluster journal has no meta row")
    }
}
