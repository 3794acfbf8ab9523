import GRDB

/// Applies a `RetentionPolicy` in bounded passes on the writer thread.
///
/// Each pass (one short transaction, run by `JournalWriter` between group commits) removes at most
/// `maxRemovalsPerPass` messages:
/// - count: checks up to `topicsPerPass` topics against their `maxMessagesPerTopic`: first the topics
///   appended to since they were last checked, then, after open, a sweep over every topic (so a
///   lowered limit applies to quiet topics too);
/// - age: walks the oldest messages, removing those older than their topic's `maxAge`, and stops at
///   the first message younger than the shortest age limit;
/// - bytes: while the database's pages in use (`StorageUsage`: every table and index, not only
///   payloads) exceed `maxBytes`, removes the oldest messages journal-wide: as many as the excess
///   holds at the journal's current bytes per message, then the next pass measures again. Free
///   pages past a slack of `maxBytes / 16` are handed back to the file system
///   (`PRAGMA incremental_vacuum`) in journals created with `auto_vacuum = INCREMENTAL`.
/// Removing a message raises its topic's `pruned_through` and counts in `pruned_messages`.
///
/// A topic with no messages left loses its `topics` row once nothing up to its `pruned_through`
/// is left in the journal (every offset it could report as pruned is older than the oldest kept
/// message); `meta.forgotten_through` keeps the highest such `pruned_through`, so `prunedAfter`
/// still answers for it. Candidates are the topics a pass or a clear emptied, checked in the same
/// pass, and a slow sweep over every topic (`emptySweepPerPass` per pass) catches the rest. A dropped
/// topic's id is forgotten by the caches here and in the writer (an id can be reused).
///
/// Not thread-safe: owned and used by the writer thread only.
final class Pruner {
    /// What one pass removed.
    struct Report {
        var byCount = 0
        var byAge = 0
        var byBytes = 0
        var bytes: Int64 = 0
        /// Names of the topics whose rows were deleted (no messages left).
        var droppedTopics: [String] = []
        /// The pass stopped at one of its bounds; another should follow soon.
        var hasMore = false

        var removed: Int { byCount + byAge + byBytes }
    }

    private struct Victim {
        var topicID: Int64
        var bytes: Int64
    }

    let policy: RetentionPolicy
    private let maxRemovalsPerPass = 4_096
    private let topicsPerPass = 256
    private let rowsScannedPerPass = 4_096
    /// Topics the sweep for empty ones checks per pass (two index seeks each).
    private let emptySweepPerPass = 64

    /// Topics appended to since their last count check, in first-dirtied order (an id whose
    /// entry in `dirtyNames` is gone was dropped meanwhile and is skipped).
    private var dirty: [Int64] = []
    private var dirtyHead = 0
    private var dirtyNames: [Int64: String] = [:]
    /// Topics a removal or a clear may have emptied, checked for dropping by the next pass.
    private var emptied: Set<Int64> = []
    /// Where the sweep for empty topics resumes (topic id); it wraps around.
    private var emptySweepAfter: Int64 = 0
    /// The journal's auto_vacuum mode is INCREMENTAL; read at the first pass.
    private var incrementalVacuum: Bool?
    /// Where the startup sweep over all topics stands (topic id); nil once done.
    private var sweepAfter: Int64? = 0
    /// Where the age walk resumes (offset), past messages kept by a longer per-filter age.
    private var ageScanAfter: Int64 = 0
    /// Limits per topic id, so the age walk does not resolve overrides for every row.
    private var limitsByTopic: [Int64: RetentionPolicy.Limits] = [:]
    /// Messages per topic id where known: counted once, then kept current by appends and removals,
    /// so that a topic within its limit costs its appends no count query at all (the query walks
    /// the topic's index entries; per pass and per busy topic it was 13% of the writer's time).
    private var counts: [Int64: Int] = [:]
    private let maxTrackedTopics = 65_536

    init(policy: RetentionPolicy) {
        self.policy = policy
    }

    /// Whether a pass has known work beyond the periodic age and bytes checks.
    var hasPendingTopics: Bool { dirtyHead < dirty.count || sweepAfter != nil || !emptied.isEmpty }

    /// Records `count` appends to a topic (in the writer's open transaction); a coming pass checks
    /// the topic's count unless it is known to be within the topic's limit.
    func noteAppends(_ count: Int, topicID: Int64, name: String) {
        if let known = counts[topicID] {
            counts[topicID] = known + count
            if let keep = limitsByTopic[topicID]?.maxMessagesPerTopic, known + count <= keep { return }
        }
        markDirty(topicID: topicID, name: name)
    }

    /// Records that a topic's messages were all deleted (in the writer's open transaction); the
    /// next pass may drop its row.
    func noteCleared(topicID: Int64) {
        if counts[topicID] != nil { counts[topicID] = 0 }
        emptied.insert(topicID)
    }

    private func markDirty(topicID: Int64, name: String) {
        if dirtyNames.updateValue(name, forKey: topicID) == nil { dirty.append(topicID) }
    }

    /// Runs one bounded pass inside the caller's transaction and updates `meta`'s counters.
    func pass(_ db: Database, now: Int64, meta: inout JournalMeta) throws -> Report {
        var report = Report()
        var victims: [Int64: Victim] = [:]
        try pruneByCount(db, victims: &victims, report: &report)
        try pruneByAge(db, now: now, victims: &victims, report: &report)
        try pruneByBytes(db, messageCount: meta.messageCount, victims: &victims, report: &report)
        try remove(victims, db)
        report.bytes = victims.values.reduce(0) { $0 + $1.bytes }
        meta.messageCount -= victims.count
        meta.payloadBytes -= report.bytes
        meta.prunedMessages += victims.count
        try dropEmptyTopics(db, report: &report)
        try releaseFreePages(db, report: &report)
        return report
    }

    /// Forgets in-memory progress and counts after a failed transaction (it was rolled back).
    func reset() {
        ageScanAfter = 0
        limitsByTopic.removeAll()
        counts.removeAll()
    }

    /// Forgets everything known about a topic whose row was deleted.
    private func forget(topicID: Int64) {
        counts[topicID] = nil
        limitsByTopic[topicID] = nil
        dirtyNames[topicID] = nil
        emptied.remove(topicID)
    }

    /// The topic's message count, counted now if not known.
    private func count(of topicID: Int64, _ db: Database) throws -> Int {
        if let known = counts[topicID] { return known }
        let counted = try Int.fetchOne(
            try db.cachedStatement(sql: "SELECT COUNT(*) FROM messages WHERE topic_id = ?"), arguments: [topicID]) ?? 0
        if counts.count >= maxTrackedTopics { counts.removeAll(keepingCapacity: true) }
        counts[topicID] = counted
        return counted
    }

    private func limits(for topicID: Int64, name: String? = nil, _ db: Database) throws -> RetentionPolicy.Limits {
        if let limits = limitsByTopic[topicID] { return limits }
        let topicName = try name ?? String.fetchOne(
                try db.cachedStatement(sql: "SELECT name FROM topics WHERE id = ?"), arguments: [topicID]) ?? ""
        let limits = policy.limits(for: topicName)
        if limitsByTopic.count >= 65_536 { limitsByTopic.removeAll(keepingCapacity: true) }
        limitsByTopic[topicID] = limits
        return limits
    }

    private func nextTopicToCheck(_ db: Database) throws -> (id: Int64, name: String)? {
        while dirtyHead < dirty.count {
            let id = dirty[dirtyHead]
            dirtyHead += 1
            if dirtyHead == dirty.count || dirtyHead >= 4_096 {
                dirty.removeFirst(dirtyHead)
                dirtyHead = 0
            }
            if let name = dirtyNames.removeValue(forKey: id) { return (id, name) }
        }
        guard let after = sweepAfter else { return nil }
        let row = try Row.fetchOne(
                try db.cachedStatement(sql: "SELECT id, name FROM topics WHERE id > ? ORDER BY id LIMIT 1"),
            arguments: [after])
        guard let row else {
            sweepAfter = nil
            return nil
        }
        sweepAfter = row[0]
        return (row[0], row[1])
    }

    private func pruneByCount(_ db: Database, victims: inout [Int64: Victim], report: inout Report) throws {
        let oldestStatement = try db.cachedStatement(sql: """
            SELECT offset, length(payload) FROM messages WHERE topic_id = ? ORDER BY offset LIMIT ?
            """)
        var checked = 0
        while checked < topicsPerPass, victims.count < maxRemovalsPerPass, let topic = try nextTopicToCheck(db) {
            checked += 1
            let keep = max(0, try limits(for: topic.id, name: topic.name, db).maxMessagesPerTopic)
            let excess = try count(of: topic.id, db) - keep
            guard excess > 0 else { continue }
            let budget = maxRemovalsPerPass - victims.count
            let rows = try Row.fetchAll(oldestStatement, arguments: [topic.id, min(excess, budget)])
            for row in rows { victims[row[0]] = Victim(topicID: topic.id, bytes: row[1]) }
            report.byCount += rows.count
            if excess > budget { markDirty(topicID: topic.id, name: topic.name) }
        }
        if hasPendingTopics { report.hasMore = true }
    }

    private func pruneByAge(_ db: Database, now: Int64, victims: inout [Int64: Victim], report: inout Report) throws {
        let youngest = now - policy.shortestMaxAge.milliseconds
        let rows = try Row.fetchAll(
            try db.cachedStatement(sql: """
                SELECT offset, topic_id, timestamp_ms, length(payload) FROM messages WHERE offset > ?
                ORDER BY offset LIMIT ?
                """),
            arguments: [ageScanAfter, rowsScannedPerPass])
        for row in rows {
            let offset: Int64 = row[0], topicID: Int64 = row[1], timestamp: Int64 = row[2]
            if timestamp >= youngest || victims.count >= maxRemovalsPerPass {
                ageScanAfter = 0
                report.hasMore = report.hasMore || victims.count >= maxRemovalsPerPass
                return
            }
            ageScanAfter = offset
            guard victims[offset] == nil else { continue }
            if timestamp < now - (try limits(for: topicID, db).maxAge.milliseconds) {
                victims[offset] = Victim(topicID: topicID, bytes: row[3])
                report.byAge += 1
            }
        }
        if rows.count == rowsScannedPerPass {
            report.hasMore = true
        } else {
            ageScanAfter = 0
        }
    }

    private func pruneByBytes(_ db: Database, messageCount: Int, victims: inout [Int64: Victim], report: inout Report) throws {
        let used = try StorageUsage.read(db).usedBytes
        guard used > policy.maxBytes, messageCount > 0 else { return }
        // What a message costs on disk today, its share of every table and index included.
        let perMessage = max(1, used / Int64(messageCount))
        let excess = used - policy.maxBytes - Int64(victims.count) * perMessage
        guard excess > 0 else { return }
        var remaining = (excess + perMessage - 1) / perMessage
        let rows = try Row.fetchCursor(
            try db.cachedStatement(sql: "SELECT offset, topic_id, length(payload) FROM messages ORDER BY offset"))
        while remaining > 0, victims.count < maxRemovalsPerPass, let row = try rows.next() {
            let offset: Int64 = row[0]
            guard victims[offset] == nil else { continue }
            victims[offset] = Victim(topicID: row[1], bytes: row[2])
            remaining -= 1
            report.byBytes += 1
        }
        // Pages are freed by whole pages, not by rows: measure again after this removal.
        if report.byBytes > 0 { report.hasMore = true }
    }

    /// Deletes the `topics` rows of emptied topics (those of this pass and clears, then a window
    /// of the sweep) whose `pruned_through` is older than every message left, raising
    /// `meta.forgotten_through` to theirs.
    private func dropEmptyTopics(_ db: Database, report: inout Report) throws {
        let oldestKept = try Int64.fetchOne(
            try db.cachedStatement(sql: "SELECT MIN(offset) FROM messages")) ?? .max
        let drop = try db.cachedStatement(sql: """
            DELETE FROM topics WHERE id = ? AND pruned_through < ?
                AND NOT EXISTS (SELECT 1 FROM messages WHERE topic_id = topics.id)
            RETURNING name, pruned_through
            """)
        var forgottenThrough: Int64 = 0
        func dropIfEmpty(_ id: Int64) throws {
            guard let row = try Row.fetchOne(drop, arguments: [id, oldestKept]) else { return }
            report.droppedTopics.append(row[0])
            forgottenThrough = max(forgottenThrough, row[1])
            forget(topicID: id)
        }
        var checked = 0
        while checked < maxRemovalsPerPass, let id = emptied.popFirst() {
            checked += 1
            try dropIfEmpty(id)
        }
        if !emptied.isEmpty { report.hasMore = true }
        let window = try Int64.fetchAll(
            try db.cachedStatement(sql: "SELECT id FROM topics WHERE id > ? ORDER BY id LIMIT ?"),
            arguments: [emptySweepAfter, emptySweepPerPass])
        for id in window { try dropIfEmpty(id) }
        emptySweepAfter = window.count == emptySweepPerPass ? window.last! : 0
        if forgottenThrough > 0 {
            try db.cachedStatement(sql: "UPDATE meta SET forgotten_through = MAX(forgotten_through, ?)")
                .execute(arguments: [forgottenThrough])
        }
    }

    /// In a journal with incremental auto-vacuum, gives free pages past the slack back to the
    /// file system (at most `maxRemovalsPerPass` pages a pass). The file shrinks at the next
    /// checkpoint.
    private func releaseFreePages(_ db: Database, report: inout Report) throws {
        if incrementalVacuum == nil {
            incrementalVacuum = try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") == 2
        }
        guard incrementalVacuum == true else { return }
        let usage = try StorageUsage.read(db)
        let slack = policy.maxBytes / 16 / usage.pageSize
        let surplus = usage.freePages - slack
        guard surplus > 0 else { return }
        try db.execute(sql: "PRAGMA incremental_vacuum(\(min(surplus, Int64(maxRemovalsPerPass))))")
        if surplus > Int64(maxRemovalsPerPass) { report.hasMore = true }
    }

    private func remove(_ victims: [Int64: Victim], _ db: Database) throws {
        guard !victims.isEmpty else { return }
        let delete = try db.cachedStatement(sql: "DELETE FROM messages WHERE offset = ?")
        var highestByTopic: [Int64: Int64] = [:]
        for (offset, victim) in victims {
            try delete.execute(arguments: [offset])
            highestByTopic[victim.topicID] = max(highestByTopic[victim.topicID] ?? 0, offset)
            if let known = counts[victim.topicID] { counts[victim.topicID] = known - 1 }
        }
        emptied.formUnion(highestByTopic.keys)
        let raise = try db.cachedStatement(sql: """
            UPDATE topics SET pruned_through = MAX(pruned_through, ?) WHERE id = ?
            """)
        for (topicID, offset) in highestByTopic {
            try raise.execute(arguments: [offset, topicID])
        }
    }
}

/// The database file's pages, as SQLite counts them in the current transaction (the header's
/// counters: reading them costs nothing, unlike the `dbstat` table, which walks every page).
struct StorageUsage {
    var pageSize: Int64
    var pageCount: Int64
    var freePages: Int64

    /// Bytes of the pages in use: every table, index and overflow page, free pages excluded.
    var usedBytes: Int64 { (pageCount - freePages) * pageSize }
    /// The database file's size once checkpointed (the WAL is not counted).
    var fileBytes: Int64 { pageCount * pageSize }

    static func read(_ db: Database) throws -> StorageUsage {
        StorageUsage(
            pageSize: try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 4_096,
            pageCount: try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0,
            freePages: try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0)
    }
}
