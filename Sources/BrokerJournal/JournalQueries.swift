import BrokerProtocol
import Foundation
import GRDB
import GRDBSQLite
import NIOCore

/// The journal's reads, as functions of one read transaction (a consistent snapshot).
enum JournalQueries {
    /// One page of a replay; see `ReplayQuery`.
    ///
    /// An exact filter reads its topic's index range. A wildcard filter first resolves to the
    /// topics it matches (`TopicSelection`, on the small `topics` table): none, and the page is
    /// empty without reading a message. Otherwise the page is read one of two ways, whose results
    /// are the same:
    /// - walking the messages in offset order from the page's start, keeping those of matching
    ///   topics (`walkedPage`): one row per row walked, the cheapest when the matching topics
    ///   hold most of the range;
    /// - reading each matching topic's offsets through the `(topic_id, offset)` index and
    ///   merging them (`mergedTopicsPage`): a few seeks (`seekCost` rows each) per matching topic,
    ///   whatever lies between their messages.
    /// The walk goes first but may take only as many rows as the merge would cost; if that does
    /// not fill the page, the merge reads the rest of it from where the walk stopped. So a page
    /// costs at most about twice the cheaper of the two, never a walk through messages of other
    /// topics longer than the matching topics' seeks would take. (When the filter matches more
    /// topics than the range holds offsets, the walk has no budget: it cannot cost more than the
    /// merge.) `.history(N)` keeps a record only if it is among the newest N of its topic up to
    /// `upTo` (the topic's N-th newest offset is looked up once per page).
    static func replayPage(_ query: ReplayQuery, _ db: Database) throws -> ReplayPage {
        guard let (lower, newest, limit) = query.pageBounds else { return ReplayPage(records: [], isLast: true) }
        let page = PageBounds(lower: Int64(clamping: lower), upTo: Int64(clamping: query.upTo), limit: limit, newest: newest)

        if !Topic.isWildcard(query.filter) {
            guard let topic = try Int64.fetchOne(
                try db.cachedStatement(sql: "SELECT id FROM topics WHERE name = ?"), arguments: [query.filter])
            else { return ReplayPage(records: [], isLast: true) }
            let from = max(page.lower + 1, try page.keptFrom(topic, db))
            let rows = try Row.fetchCursor(
                try db.cachedStatement(sql: """
                    SELECT offset, payload, is_binary, timestamp_ms FROM messages
                    WHERE topic_id = ? AND offset >= ? AND offset <= ? ORDER BY offset LIMIT ?
                    """),
                arguments: [topic, from, page.upTo, limit + 1])
            var records: [RetainedRecord] = []
            while let row = try rows.next() {
                if records.count == limit { return ReplayPage(records: records, isLast: false) }
                records.append(try record(row, topic: query.filter, payloadColumn: 1))
            }
            return ReplayPage(records: records, isLast: true)
        }

        // A walk of one page's length first, matching topics by name as it meets them: a filter
        // whose topics fill the range (`#`, a dashboard's `dash/#`, a resume of everything) fills
        // its page here, without resolving its topics again on every page.
        let nameStatement = try db.cachedStatement(sql: "SELECT name FROM topics WHERE id = ?")
        let matchingByName: (Int64) throws -> String? = { id in
            let name = try String.fetchOne(nameStatement, arguments: [id]) ?? ""
            return Topic.matches(filter: query.filter, name: name) ? name : nil
        }
        return try (query.topicCache ?? ReplayTopicCache()).withEntries { topics in
            let first = try walkedPage(page, rowBudget: limit + 1, db, topics: &topics, matching: matchingByName)
            guard let firstStop = first.stoppedAt, first.page.records.count < limit else {
                return ReplayPage(records: first.page.records, isLast: first.stoppedAt == nil && first.page.isLast)
            }
            var rest = page
            rest.lower = firstStop
            rest.limit = limit - first.page.records.count
            let more = try sparseWildcardPage(query.filter, rest, db, topics: &topics, matchingByName: matchingByName)
            return ReplayPage(records: first.page.records + more.records, isLast: more.isLast)
        }
    }

    /// The rest of a wildcard page whose first walk did not fill it: the filter's topics resolved
    /// on `topics`, then read by walking or through the index, whichever costs less.
    static func sparseWildcardPage(
        _ filter: String, _ page: PageBounds, _ db: Database, topics known: inout [Int64: (name: String, keptFrom: Int64)?],
        matchingByName: (Int64) throws -> String?
    ) throws -> ReplayPage {
        let limit = page.limit
        // As many matching topics as seeking each costs no more than walking the range.
        let maxTopics = Int(clamping: (page.upTo - page.lower) / seekCost)
        var topics: [(id: Int64, name: String)] = []
        var tooMany = false
        try TopicSelection(filter: filter).forEach(db) { id, name in
            if topics.count == maxTopics {
                tooMany = true
                return false
            }
            topics.append((id, name))
            return true
        }
        if tooMany {
            return try walkedPage(page, rowBudget: nil, db, topics: &known, matching: matchingByName).page
        }
        guard !topics.isEmpty else { return ReplayPage(records: [], isLast: true) }
        let names = Dictionary(topics.map { ($0.id, $0.name) }, uniquingKeysWith: { first, _ in first })
        let walked = try walkedPage(page, rowBudget: topics.count * Int(seekCost), db, topics: &known) { names[$0] }
        guard let stoppedAt = walked.stoppedAt else { return walked.page }
        var rest = page
        rest.lower = stoppedAt
        rest.limit = limit - walked.page.records.count
        let merged = try mergedTopicsPage(topics, rest, db)
        return ReplayPage(records: walked.page.records + merged.records, isLast: merged.isLast)
    }

    /// What one SQLite index seek costs, in rows walked in offset order (an estimate that only
    /// chooses between two plans whose results are the same).
    static let seekCost: Int64 = 16

    /// A page's bounds, in SQLite's integers.
    struct PageBounds {
        /// Exclusive.
        var lower: Int64
        /// Inclusive.
        var upTo: Int64
        var limit: Int
        /// `.history(N)`'s N; nil for `since`.
        var newest: Int?

        /// The lowest offset of `topic` that the selection keeps.
        func keptFrom(_ topic: Int64, _ db: Database) throws -> Int64 {
            guard let newest else { return 0 }
            return try Int64.fetchOne(
                try db.cachedStatement(sql: """
                    SELECT offset FROM messages WHERE topic_id = ? AND offset <= ? ORDER BY offset DESC LIMIT 1 OFFSET ?
                    """),
                arguments: [topic, upTo, newest - 1]) ?? 0
        }
    }

    /// A wildcard page read topic by topic through the `(topic_id, offset)` index: each topic's
    /// lowest offsets in the page's range (only those below the page's current `limit + 1`-th
    /// lowest, so later topics read less), merged; then the `limit` lowest records by offset.
    static func mergedTopicsPage(_ topics: [(id: Int64, name: String)], _ page: PageBounds, _ db: Database) throws -> ReplayPage {
        let keep = page.limit + 1  // one more than the page: whether a next page exists
        /// Offsets found so far, with their topic's index; cut back to the `keep` lowest whenever
        /// it holds twice that, which lowers the ceiling for the topics read after.
        var lowest: [(offset: Int64, topic: Int)] = []
        var ceiling = page.upTo
        func cut() {
            lowest.sort { $0.offset < $1.offset }
            if lowest.count >= keep {
                lowest.removeLast(lowest.count - keep)
                ceiling = lowest[keep - 1].offset - 1
            }
        }
        let offsets = try db.cachedStatement(sql: """
            SELECT offset FROM messages WHERE topic_id = ? AND offset >= ? AND offset <= ? ORDER BY offset LIMIT ?
            """)
        for (index, topic) in topics.enumerated() {
            let from = max(page.lower + 1, try page.keptFrom(topic.id, db))
            guard from <= ceiling else { continue }
            let cursor = try Int64.fetchCursor(offsets, arguments: [topic.id, from, ceiling, keep])
            while let offset = try cursor.next() { lowest.append((offset, index)) }
            if lowest.count >= 2 * keep { cut() }
        }
        cut()
        let byOffset = try db.cachedStatement(sql: """
            SELECT offset, payload, is_binary, timestamp_ms FROM messages WHERE offset = ?
            """)
        var records: [RetainedRecord] = []
        records.reserveCapacity(min(page.limit, lowest.count))
        for entry in lowest.prefix(page.limit) {
            guard let row = try Row.fetchOne(byOffset, arguments: [entry.offset]) else { continue }
            records.append(try record(row, topic: topics[entry.topic].name, payloadColumn: 1))
        }
        return ReplayPage(records: records, isLast: lowest.count <= page.limit)
    }

    /// A wildcard page read by walking the messages in offset order from the page's start and
    /// keeping those of the topics `matching` names (asked once per topic per page), so a whole
    /// replay walks the range once and a page holds at most `limit` records in memory. With a
    /// `rowBudget`, the walk stops after that many rows with the page not full, and says at which
    /// offset (`stoppedAt`: every matching record up to it is in the page).
    static func walkedPage(
        _ page: PageBounds, rowBudget: Int?, _ db: Database, topics: inout [Int64: (name: String, keptFrom: Int64)?],
        matching: (Int64) throws -> String?
    ) throws -> (page: ReplayPage, stoppedAt: Int64?) {
        var records: [RetainedRecord] = []
        records.reserveCapacity(page.limit)
        var walked = 0
        // Stepped through the C API: a row costs no GRDB Row, no Data, one copy of its payload.
        let statement = try db.cachedStatement(sql: """
            SELECT offset, topic_id, payload, is_binary, timestamp_ms FROM messages
            WHERE offset > ? AND offset <= ? ORDER BY offset
            """)
        try statement.setArguments([page.lower, page.upTo])
        let rows = statement.sqliteStatement
        defer { sqlite3_reset(rows) }
        var last = page.lower
        while true {
            let code = sqlite3_step(rows)
            guard code == SQLITE_ROW else {
                guard code == SQLITE_DONE else { throw db.stepError(code) }
                break
            }
            let offset = sqlite3_column_int64(rows, 0), topicID = sqlite3_column_int64(rows, 1)
            if let rowBudget, walked == rowBudget { return (ReplayPage(records: records, isLast: false), last) }
            walked += 1
            let topic: (name: String, keptFrom: Int64)?
            if let known = topics[topicID] {
                topic = known
            } else {
                topic = try matching(topicID).map { ($0, try page.keptFrom(topicID, db)) }
                topics[topicID] = topic
            }
            if let topic, offset >= topic.keptFrom {
                if records.count == page.limit { return (ReplayPage(records: records, isLast: false), nil) }
                // The pointer first, then its length (SQLite's documented order).
                let blob = sqlite3_column_blob(rows, 2)
                let length = Int(sqlite3_column_bytes(rows, 2))
                let payload = length > 0 ? ByteBuffer(bytes: UnsafeRawBufferPointer(start: blob, count: length)) : ByteBuffer()
                records.append(RetainedRecord(
                    offset: UInt64(offset), topic: topic.name, payload: payload,
                    isBinary: sqlite3_column_int(rows, 3) != 0, timestampMilliseconds: sqlite3_column_int64(rows, 4)))
            }
            last = offset
        }
        return (ReplayPage(records: records, isLast: true), nil)
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

    /// Whether any topic matching `filter` had a message after `offset` removed. The topics whose
    /// rows retention deleted are no longer known by name: a `forgotten_through` after `offset`
    /// answers true for every filter (it is older than every message kept, so only a client
    /// resuming from before the journal's oldest message can be told so without cause).
    static func prunedAfter(_ offset: UInt64, filter: String, _ db: Database) throws -> Bool {
        let forgotten = try Int64.fetchOne(db, sql: "SELECT forgotten_through FROM meta") ?? 0
        if forgotten > Int64(clamping: offset) { return true }
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

    /// A page of topics with retained messages: walks `topics` in name order (its UNIQUE index)
    /// from the cursor, counting each topic's messages through `messages_by_topic`, and stops at
    /// the first name past the prefix (in byte order every name with the prefix comes together).
    static func retainedTopics(_ query: RetainedTopicsQuery, _ db: Database) throws -> RetainedTopicsPage {
        let limit = max(1, query.limit)
        let prefix = Array(query.prefix.utf8)
        // The larger of the cursor and the prefix, in byte order (SQLite compares text so).
        var start = query.prefix
        if let after = query.after, query.prefix.utf8.lexicographicallyPrecedes(after.utf8) { start = after }
        let cursor = try Row.fetchCursor(db, sql: """
            SELECT name,
                   (SELECT COUNT(*) FROM messages WHERE topic_id = topics.id) AS messages,
                   (SELECT MAX(offset) FROM messages WHERE topic_id = topics.id) AS last_offset
            FROM topics WHERE name >= ? ORDER BY name
            """, arguments: [start])
        var topics: [RetainedTopic] = []
        while let row = try cursor.next() {
            let name: String = row["name"]
            guard Array(name.utf8).starts(with: prefix) else { break }
            if let after = query.after, name.utf8.elementsEqual(after.utf8) { continue }
            let messages: Int = row["messages"]
            guard messages > 0 else { continue }
            if topics.count == limit { return RetainedTopicsPage(topics: topics, isLast: false) }
            let lastOffset: Int64 = row["last_offset"]
            topics.append(RetainedTopic(topic: name, messages: messages, lastOffset: UInt64(lastOffset)))
        }
        return RetainedTopicsPage(topics: topics, isLast: true)
    }
}

extension Database {
    /// The error for a statement stepped through SQLite's C API that returned `code`.
    func stepError(_ code: CInt) -> DatabaseError {
        DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(sqliteConnection)))
    }
}
