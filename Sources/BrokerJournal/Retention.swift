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
/// - bytes: while the payload bytes exceed `maxBytes`, removes the oldest messages journal-wide.
/// Removing a message raises its topic's `pruned_through` and counts in `pruned_messages`.
///
/// Not thread-safe: owned and used by the writer thread only.
final class Pruner {
    /// What one pass removed.
    struct Report {
        var byCount = 0
        var byAge = 0
        var byBytes = 0
        var bytes: Int64 = 0
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

    /// Topics appended to since their last count check, in first-dirtied order.
    private var dirty: [(id: Int64, name: String)] = []
    private var dirtyHead = 0
    private var dirtyIDs: Set<Int64> = []
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
    var hasPendingTopics: Bool { dirtyHead < dirty.count || sweepAfter != nil }

    /// Records `count` appends to a topic (in the writer's open transaction); a coming pass checks
    /// the topic's count unless it is known to be within the topic's limit.
    func noteAppends(_ count: Int, topicID: Int64, name: String) {
        if let known = counts[topicID] {
            counts[topicID] = known + count
            if let keep = limitsByTopic[topicID]?.maxMessagesPerTopic, known + count <= keep { return }
        }
        markDirty(topicID: topicID, name: name)
    }

    /// Records that a topic's messages were all deleted (in the writer's open transaction).
    func noteCleared(topicID: Int64) {
        if counts[topicID] != nil { counts[topicID] = 0 }
    }

    private func markDirty(topicID: Int64, name: String) {
        if dirtyIDs.insert(topicID).inserted { dirty.append((topicID, name)) }
    }

    /// Runs one bounded pass inside the caller's transaction and updates `meta`'s counters.
    func pass(_ db: Database, now: Int64, meta: inout JournalMeta) throws -> Report {
        var report = Report()
        var victims: [Int64: Victim] = [:]
        try pruneByCount(db, victims: &victims, report: &report)
        try pruneByAge(db, now: now, victims: &victims, report: &report)
        try pruneByBytes(db, payloadBytes: meta.payloadBytes, victims: &victims, report: &report)
        try remove(victims, db)
        report.bytes = victims.values.reduce(0) { $0 + $1.bytes }
        meta.messageCount -= victims.count
        meta.payloadBytes -= report.bytes
        meta.prunedMessages += victims.count
        return report
    }

    /// Forgets in-memory progress and counts after a failed transaction (it was rolled back).
    func reset() {
        ageScanAfter = 0
        limitsByTopic.removeAll()
        counts.removeAll()
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
        if dirtyHead < dirty.count {
            let topic = dirty[dirtyHead]
            dirtyHead += 1
            dirtyIDs.remove(topic.id)
            if dirtyHead == dirty.count || dirtyHead >= 4_096 {
                dirty.removeFirst(dirtyHead)
                dirtyHead = 0
            }
            return topic
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

    private func pruneByBytes(_ db: Database, payloadBytes: Int64, victims: inout [Int64: Victim], report: inout Report) throws {
        var excess = payloadBytes - victims.values.reduce(0) { $0 + $1.bytes } - policy.maxBytes
        guard excess > 0 else { return }
        let rows = try Row.fetchCursor(
            try db.cachedStatement(sql: "SELECT offset, topic_id, length(payload) FROM messages ORDER BY offset"))
        while excess > 0, victims.count < maxRemovalsPerPass, let row = try rows.next() {
            let offset: Int64 = row[0]
            guard victims[offset] == nil else { continue }
            let bytes: Int64 = row[2]
            victims[offset] = Victim(topicID: row[1], bytes: bytes)
            excess -= bytes
            report.byBytes += 1
        }
        if excess > 0 { report.hasMore = true }
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
        let raise = try db.cachedStatement(sql: """
            UPDATE topics SET pruned_through = MAX(pruned_through, ?) WHERE id = ?
            """)
        for (topicID, offset) in highestByTopic {
            try raise.execute(arguments: [offset, topicID])
        }
    }
}
