import BrokerProtocol
import Foundation
import GRDB
import NIOCore

/// The journal's reads, as functions of one read transaction (a consistent snapshot).
enum JournalQueries {
    /// One page of a replay; see `ReplayQuery`.
    ///
    /// An exact filter reads its topic's index range. A wildcard filter walks the messages in
    /// offset order from the page's start and keeps those whose topic matches (decided once per
    /// topic per page), so a whole replay walks the range once and a page holds at most `limit`
    /// records in memory. `.history(N)` keeps a record only if it is among the newest N of its
    /// topic up to `upTo` (the topic's N-th newest offset is looked up once per page).
    static func replayPage(_ query: ReplayQuery, _ db: Database) throws -> ReplayPage {
        let limit = max(1, query.limit)
        var lower = query.after
        var newest: Int?
        switch query.selection {
        case .since(let since): lower = max(lower, since)
        case .history(let count):
            if count <= 0 { return ReplayPage(records: [], isLast: true) }
            newest = count
        }
        guard lower < query.upTo else { return ReplayPage(records: [], isLast: true) }
        let upTo = Int64(clamping: query.upTo)
        let threshold = try db.cachedStatement(sql: """
            SELECT offset FROM messages WHERE topic_id = ? AND offset <= ? ORDER BY offset DESC LIMIT 1 OFFSET ?
            """)
        /// The lowest offset of `topic` that the selection keeps.
        func keptFrom(_ topic: Int64) throws -> Int64 {
            guard let newest else { return 0 }
            return try Int64.fetchOne(threshold, arguments: [topic, upTo, newest - 1]) ?? 0
        }

        var records: [RetainedRecord] = []
        if !Topic.isWildcard(query.filter) {
            guard let topic = try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT id FROM topics WHERE name = ?"), arguments: [query.filter])
            else { return ReplayPage(records: [], isLast: true) }
            let from = max(Int64(clamping: lower) + 1, try keptFrom(topic))
            let rows = try Row.fetchCursor(
                try db.cachedStatement(sql: """
                    SELECT offset, payload, is_binary, timestamp_ms FROM messages
                    WHERE topic_id = ? AND offset >= ? AND offset <= ? ORDER BY offset LIMIT ?
                    """),
                arguments: [topic, from, upTo, limit + 1])
            while let row = try rows.next() {
                if records.count == limit { return ReplayPage(records: records, isLast: false) }
                records.append(try record(row, topic: query.filter, payloadColumn: 1))
            }
            return ReplayPage(records: records, isLast: true)
        }

        /// Per topic id: its name and lowest kept offset when it matches, nil when it does not.
        var topics: [Int64: (name: String, keptFrom: Int64)?] = [:]
        let name = try db.cachedStatement(sql: "SELECT name FROM topics WHERE id = ?")
        let rows = try Row.fetchCursor(
            try db.cachedStatement(sql: """
                SELECT offset, topic_id, payload, is_binary, timestamp_ms FROM messages
                WHERE offset > ? AND offset <= ? ORDER BY offset
                """),
            arguments: [Int64(clamping: lower), upTo])
        while let row = try rows.next() {
            let offset: Int64 = row[0], topicID: Int64 = row[1]
            let topic: (name: String, keptFrom: Int64)?
            if let known = topics[topicID] {
                topic = known
            } else {
                let topicName = try String.fetchOne(name, arguments: [topicID]) ?? ""
                topic = Topic.matches(filter: query.filter, name: topicName)
                    ? (topicName, try keptFrom(topicID)) : nil
                topics[topicID] = topic
            }
            guard let topic, offset >= topic.keptFrom else { continue }
            if records.count == limit { return ReplayPage(records: records, isLast: false) }
            records.append(try record(row, topic: topic.name, payloadColumn: 2))
        }
        return ReplayPage(records: records, isLast: true)
    }

    /// Builds a record from `offset, …, payload, is_binary, timestamp_ms` with payload at `payloadColumn`.
    private static func record(_ row: Row, topic: String, payloadColumn: Int) throws -> RetainedRecord {
        let payload = try row.withUnsafeData(atIndex: payloadColumn) { data in
            ByteBuffer(bytes: data ?? Data())
        }
        let offset: Int64 = row[0]
        return RetainedRecord(
            offset: UInt64(offset), topic: topic, payload: payload,
            isBinary: row[payloadColumn + 1], timestampMilliseconds: row[payloadColumn + 2])
    }

    /// Whether any topic matching `filter` had a message after `offset` removed.
    static func prunedAfter(_ offset: UInt64, filter: String, _ db: Database) throws -> Bool {
        var found = false
        try TopicSelection(filter: filter).forEach(db, where: "pruned_through > ?", arguments: [Int64(clamping: offset)]) { _, _ in
            found = true
            return false
        }
        return found
    }

    static func stats(_ db: Database) throws -> JournalStats {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT message_count, payload_bytes, last_offset, pruned_messages,
                   (SELECT MIN(offset) FROM messages) AS first_offset,
                   (SELECT COUNT(*) FROM topics WHERE EXISTS
                       (SELECT 1 FROM messages WHERE messages.topic_id = topics.id)) AS topics
            FROM meta
            """) else { throw JournalError.failed("journal has no meta row") }
        let payloadBytes: Int64 = row["payload_bytes"]
        let firstOffset: Int64 = row["first_offset"] ?? 0
        let lastOffset: Int64 = row["last_offset"]
        return JournalStats(
            messages: row["message_count"], topics: row["topics"], bytes: Int(payloadBytes),
            firstOffset: UInt64(firstOffset), lastOffset: UInt64(lastOffset),
            prunedMessages: row["pruned_messages"])
    }
}
