import Foundation
import GRDB
import GRDBSQLite
import Logging
import NIOCore

/// The journal's only writer: a dedicated thread that commits appends in groups.
///
/// Callers on any thread `submit` requests into a lock-protected queue and return at once. The
/// thread takes everything pending, commits the appends in transactions of at most
/// `maxBatchSize` (cached prepared statements), then runs the completions serially, in queue
/// order, which is offset order. A `snapshot` therefore completes after every append queued before
/// it, with the highest offset committed so far. A `clear` is committed in its own transaction at
/// its place in the queue. Between groups the thread runs bounded retention passes (`Pruner`).
///
/// Ownership: everything below "Writer thread only" is touched by the thread alone; the queue and
/// `accepting` are guarded by `condition`. Requests submitted after `stop` fail with `.closed`, on
/// the submitting thread.
final class JournalWriter: @unchecked Sendable {
    enum Request {
        /// An object, so that the writer's passes over the queue (commit, then completions) copy
        /// one reference instead of the message's fields.
        case append(any JournalAppendRequest)
        case snapshot(@Sendable (UInt64) -> Void)
        case clear(String, @Sendable (Result<Int, JournalError>) -> Void)
        /// Retention applied now, at this place in the queue: passes until one has no more to do.
        case applyRetention(@Sendable () -> Void)
    }

    private let condition = NSCondition()
    private var pending: [Request] = []
    private var accepting = true
    private var onStopped: (@Sendable () -> Void)?
    private var completionRunEnded: (@Sendable () -> Void)?

    // Writer thread only.
    private let pool: DatabasePool
    private let configuration: JournalConfiguration
    private let logger: Logger
    private let pruner: Pruner
    private var meta: JournalMeta
    private var taken: [Request] = []
    private var topicIDs: [String: Int64] = [:]
    private var nextPrune = ContinuousClock.now
    private let maxCachedTopics = 100_000

    init(pool: DatabasePool, meta: JournalMeta, configuration: JournalConfiguration, logger: Logger) {
        self.pool = pool
        self.meta = meta
        self.configuration = configuration
        self.logger = logger
        self.pruner = Pruner(policy: configuration.retention)
    }

    /// Starts the thread; call once.
    func start() {
        let thread = Thread { [self] in
            nameCurrentThread("journal-writer")
            run()
        }
        thread.start()
    }

    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        condition.lock()
        completionRunEnded = handler
        condition.unlock()
    }

    /// Queues a request; never blocks beyond a short lock.
    func submit(_ request: Request) {
        condition.lock()
        guard accepting else {
            let runEnded = completionRunEnded
            condition.unlock()
            Self.fail(request, .closed, lastOffset: 0)
            runEnded?()
            return
        }
        pending.append(request)
        if pending.count == 1 { condition.signal() }
        condition.unlock()
    }

    /// Refuses new requests, lets the thread commit and complete what is queued, then calls
    /// `onStopped` from the thread as it ends.
    func stop(onStopped: @escaping @Sendable () -> Void) {
        condition.lock()
        accepting = false
        self.onStopped = onStopped
        condition.signal()
        condition.unlock()
    }

    private func run() {
        while true {
            condition.lock()
            while pending.isEmpty && accepting {
                if !condition.wait(until: idleDeadline()) { break }
            }
            swap(&pending, &taken)
            let finished = !accepting && taken.isEmpty
            let stopped = finished ? onStopped : nil
            let runEnded = completionRunEnded
            condition.unlock()
            if finished {
                stopped?()
                return
            }
            process(&taken, runEnded: runEnded)
            pruneIfDue()
        }
    }

    /// When an idle writer wakes up for retention: soon while a pass has work left, else in a second.
    private func idleDeadline() -> Date {
        let wait = pruner.hasPendingTopics ? nextPrune - ContinuousClock.now : .seconds(1)
        let (seconds, attoseconds) = max(wait, .zero).components
        return Date(timeIntervalSinceNow: Double(seconds) + Double(attoseconds) * 1e-18)
    }

    /// Commits `requests` group by group, then empties it; `runEnded` follows each group's
    /// completions.
    ///
    /// The writer lets go of the requests before the last `runEnded`, which hands them to the
    /// event loops: releasing them afterwards would contend with the loops for their reference
    /// counts (it cost the writer 6% of its time).
    private func process(_ requests: inout [Request], runEnded: (@Sendable () -> Void)?) {
        var start = 0
        while start < requests.count {
            if case .clear(let filter, let completion) = requests[start] {
                completion(clear(filter))
                start += 1
            } else if case .applyRetention(let completion) = requests[start] {
                while runRetentionPass().hasMore {}
                completion()
                start += 1
            } else {
                var end = start, appends = 0
                while end < requests.count {
                    if case .clear = requests[end] { break }
                    if case .applyRetention = requests[end] { break }
                    if case .append = requests[end] {
                        if appends == configuration.maxBatchSize { break }
                        appends += 1
                    }
                    end += 1
                }
                commit(requests[start..<end])
                start = end
            }
            if start == requests.count { requests.removeAll(keepingCapacity: true) }
            runEnded?()
        }
    }

    /// Commits the appends of `group` in one transaction, then runs every completion in order.
    ///
    /// The insert is GRDB's cached statement, bound and stepped through the C API: the payload is
    /// bound straight from the entry's ByteBuffer (SQLITE_STATIC: SQLite copies it into the page
    /// during the step, before the buffer can go away), so a row costs no Data, no
    /// StatementArguments array and no DatabaseValue boxing.
    private func commit(_ group: ArraySlice<Request>) {
        let first = meta.lastOffset
        var next = meta
        var failure: JournalError?
        do {
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    let insert = try db.cachedStatement(sql: """
                        INSERT INTO messages (offset, topic_id, payload, is_binary, timestamp_ms)
                        VALUES (?, ?, ?, ?, ?)
                        """)
                    let statement = insert.sqliteStatement
                    let now = configuration.clock()
                    // Consecutive appends to one topic: one lookup of its id, one note to the pruner.
                    var lastTopic: (name: String, id: Int64)?
                    var run = 0
                    defer { sqlite3_clear_bindings(statement) }
                    sqlite3_bind_int64(statement, 5, now)
                    for index in group.indices {
                        guard case .append(let entry) = group[index] else { continue }
                        let topic = entry.topic, payload = entry.payload
                        next.lastOffset += 1
                        let topicID: Int64
                        if let lastTopic, lastTopic.name == topic {
                            topicID = lastTopic.id
                            run += 1
                        } else {
                            if let lastTopic { pruner.noteAppends(run, topicID: lastTopic.id, name: lastTopic.name) }
                            topicID = try self.topicID(for: topic, db)
                            lastTopic = (topic, topicID)
                            run = 1
                        }
                        sqlite3_bind_int64(statement, 1, Int64(bitPattern: next.lastOffset))
                        sqlite3_bind_int64(statement, 2, topicID)
                        sqlite3_bind_int(statement, 4, entry.isBinary ? 1 : 0)
                        let length = payload.readableBytes
                        let code = payload.withUnsafeReadableBytes { bytes -> CInt in
                            if let base = bytes.baseAddress, length > 0 {
                                sqlite3_bind_blob(statement, 3, base, CInt(length), nil)  // nil = SQLITE_STATIC
                            } else {
                                sqlite3_bind_zeroblob(statement, 3, 0)
                            }
                            let code = sqlite3_step(statement)
                            sqlite3_reset(statement)
                            return code
                        }
                        guard code == SQLITE_DONE else { throw db.stepError(code) }
                        next.messageCount += 1
                        next.payloadBytes += Int64(length)
                    }
                    if let lastTopic { pruner.noteAppends(run, topicID: lastTopic.id, name: lastTopic.name) }
                    try next.save(db)
                    return .commit
                }
            }
            meta = next
        } catch {
            topicIDs.removeAll()  // topics created by the rolled-back transaction are gone
            pruner.reset()  // and its counts include the rolled-back appends
            failure = .failed(Schema.reason(error))
            logger.error("journal commit failed", metadata: ["error": "\(Schema.reason(error))"])
        }
        var offset = first
        for index in group.indices {
            switch group[index] {
            case .append(let append):
                if let failure {
                    append.completed(.failure(failure))
                } else {
                    offset += 1
                    append.completed(.success(offset))
                }
            case .snapshot(let completion):
                completion(offset)
            case .clear, .applyRetention:
                break
            }
        }
    }

    private func topicID(for name: String, _ db: Database) throws -> Int64 {
        if let id = topicIDs[name] { return id }
        let id: Int64
        if let existing = try Int64.fetchOne(
            try db.cachedStatement(sql: "SELECT id FROM topics WHERE name = ?"), arguments: [name]) {
            id = existing
        } else {
            try db.cachedStatement(sql: "INSERT INTO topics (name) VALUES (?)").execute(arguments: [name])
            id = db.lastInsertedRowID
        }
        if topicIDs.count >= maxCachedTopics { topicIDs.removeAll(keepingCapacity: true) }
        topicIDs[name] = id
        return id
    }

    /// Deletes the messages of every topic matching `filter`, raising each one's `pruned_through`
    /// to its last offset.
    private func clear(_ filter: String) -> Result<Int, JournalError> {
        var next = meta
        do {
            let removed: Int = try pool.writeWithoutTransaction { db in
                var removed = 0
                try db.inTransaction(.immediate) {
                    var topics: [Int64] = []
                    try TopicSelection(filter: filter).forEach(db) { id, _ in
                        topics.append(id)
                        return true
                    }
                    let delete = try db.cachedStatement(sql: """
                        DELETE FROM messages WHERE topic_id = ? RETURNING offset, length(payload)
                        """)
                    let raise = try db.cachedStatement(sql: """
                        UPDATE topics SET pruned_through = MAX(pruned_through, ?) WHERE id = ?
                        """)
                    for topic in topics {
                        let rows = try Row.fetchAll(delete, arguments: [topic])
                        pruner.noteCleared(topicID: topic)
                        guard !rows.isEmpty else { continue }
                        let last = rows.map { $0[0] as Int64 }.max()!
                        try raise.execute(arguments: [last, topic])
                        removed += rows.count
                        next.messageCount -= rows.count
                        next.payloadBytes -= rows.reduce(0) { $0 + ($1[1] as Int64) }
                    }
                    try next.save(db)
                    return .commit
                }
                return removed
            }
            meta = next
            logger.info("journal cleared retained messages", metadata: ["filter": "\(filter)", "messages": "\(removed)"])
            return .success(removed)
        } catch {
            pruner.reset()
            logger.error("journal clear failed", metadata: ["filter": "\(filter)", "error": "\(Schema.reason(error))"])
            return .failure(.failed(Schema.reason(error)))
        }
    }

    /// Runs a retention pass if its time has come.
    private func pruneIfDue() {
        guard ContinuousClock.now >= nextPrune else { return }
        runRetentionPass()
    }

    /// Runs one bounded retention pass and schedules the next.
    @discardableResult
    private func runRetentionPass() -> Pruner.Report {
        var next = meta
        var report = Pruner.Report()
        do {
            try pool.writeWithoutTransaction { db in
                try db.inTransaction(.immediate) {
                    report = try pruner.pass(db, now: configuration.clock(), meta: &next)
                    guard report.removed > 0 || !report.droppedTopics.isEmpty else { return .rollback }
                    try next.save(db)
                    return .commit
                }
            }
            meta = next
            for name in report.droppedTopics { topicIDs[name] = nil }
        } catch {
            report.droppedTopics.removeAll()
            pruner.reset()
            logger.error("journal retention pass failed", metadata: ["error": "\(Schema.reason(error))"])
        }
        if report.removed > 0 || !report.droppedTopics.isEmpty {
            logger.info("journal pruned retained messages", metadata: [
                "by_count": "\(report.byCount)", "by_age": "\(report.byAge)", "by_bytes": "\(report.byBytes)",
                "bytes": "\(report.bytes)", "pruned_total": "\(meta.prunedMessages)",
                "topics_dropped": "\(report.droppedTopics.count)",
            ])
        }
        nextPrune = ContinuousClock.now + (report.hasMore ? .milliseconds(5) : configuration.pruneInterval)
        return report
    }

    private static func fail(_ request: Request, _ error: JournalError, lastOffset: UInt64) {
        switch request {
        case .append(let append): append.completed(.failure(error))
        case .snapshot(let completion): completion(lastOffset)
        case .clear(_, let completion): completion(.failure(error))
        case .applyRetention(let completion): completion()
        }
    }
}
