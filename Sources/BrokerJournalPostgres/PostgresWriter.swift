import Atomics
import BrokerJournal
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// The cluster journal's only writer on this broker: one task that commits what the broker's
/// loops submit, in groups.
///
/// A group (up to `maxBatchSize` appends, with the snapshots and live broadcasts queued among
/// them) is one transaction:
/// 1. one statement takes the group's offsets by raising `broker_meta.last_offset` (its row lock
///    is held to the commit, so the brokers' groups commit one at a time, in offset order: an
///    offset becomes visible only after every lower one), adds the topics and inserts every
///    message from arrays (`unnest`), whatever the group's size;
/// 2. one statement sends the group's notifications (`FeedNotification`), delivered at commit;
/// 3. COMMIT.
/// Its requests are completed by the feed when the notification comes back (in commit order
/// with every broker's groups); a group that fails is failed here at once. Clears and
/// retention passes run in transactions of their own at their place in the queue.
final class PostgresWriter: @unchecked Sendable {
    enum Request: @unchecked Sendable {
        case append(any JournalAppendRequest)
        case snapshot(@Sendable (UInt64) -> Void)
        case broadcast(JournalEntry)
        case clear(String, @Sendable (Result<Int, JournalError>) -> Void)
        case applyRetention(@Sendable () -> Void)
    }

    private struct Queue {
        var pending: [Request] = []
        /// Payload bytes of the live broadcasts in `pending` (`maxQueuedBroadcastBytes`).
        var broadcastBytes = 0
        /// Broadcasts dropped since the last warning.
        var droppedBroadcasts = 0
        var accepting = true
        var waiter: CheckedContinuation<Void, Never>?
        var runEnded: (@Sendable () -> Void)?
    }

    private let client: PostgresClient
    private let instance: String
    private let batches: OwnBatches
    private let feed: ClusterFeed
    private let configuration: JournalConfiguration
    private let logger: Logger
    private let queue = NIOLockedValueBox(Queue())
    private let healthy = ManagedAtomic(true)
    private let retention: PostgresRetention
    private var task: Task<Void, Never>?
    private var ticker: Task<Void, Never>?
    /// Live messages waiting for the writer, in payload bytes: past this (PostgreSQL slow or
    /// unreachable) further ones are dropped for the other brokers, as live messages are for a
    /// subscriber that is not there, instead of growing memory. Retained ones have their own
    /// backpressure (`maxPendingRetained…`).
    static let maxQueuedBroadcastBytes = 64 << 20
    /// How long one transaction may take before its group is failed (PostgreSQL unreachable).
    private let transactionTimeout: Duration = .seconds(10)

    // Writer task only.
    private var nextBatch: UInt64 = 1
    private var nextRetention = ContinuousClock.now
    /// The offset before the next group's, as far as this writer knows: where a group without
    /// appends stands among the others.
    private var lastCommitted: UInt64 = 0

    init(
        client: PostgresClient, instance: String, batches: OwnBatches, feed: ClusterFeed,
        configuration: JournalConfiguration, logger: Logger
    ) {
        self.client = client
        self.instance = instance
        self.batches = batches
        self.feed = feed
        self.configuration = configuration
        self.logger = logger
        self.retention = PostgresRetention(policy: configuration.retention, clock: configuration.clock, logger: logger)
    }

    /// Whether the last transaction committed.
    var isHealthy: Bool { healthy.load(ordering: .relaxed) }

    func onRunEnded(_ handler: @escaping @Sendable () -> Void) {
        queue.withLockedValue { $0.runEnded = handler }
    }

    func start() {
        task = Task { await run() }
        // Wakes an idle writer for its retention passes.
        ticker = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                self?.wake()
            }
        }
    }

    /// Queues a request; never blocks beyond a short lock. After `stop`, fails it at once.
    func submit(_ request: Request) {
        let (accepted, waiter, runEnded) = queue.withLockedValue { queue -> (Bool, CheckedContinuation<Void, Never>?, (@Sendable () -> Void)?) in
            guard queue.accepting else { return (false, nil, queue.runEnded) }
            if case .broadcast(let entry) = request {
                let bytes = entry.payload.readableBytes + entry.topic.utf8.count
                guard queue.broadcastBytes + bytes <= Self.maxQueuedBroadcastBytes else {
                    queue.droppedBroadcasts += 1
                    return (true, nil, nil)
                }
                queue.broadcastBytes += bytes
            }
            queue.pending.append(request)
            defer { queue.waiter = nil }
            return (true, queue.waiter, nil)
        }
        waiter?.resume()
        if !accepted {
            fail([request], .closed)
            runEnded?()
        }
    }

    private func wake() {
        let waiter = queue.withLockedValue { queue -> CheckedContinuation<Void, Never>? in
            defer { queue.waiter = nil }
            return queue.waiter
        }
        waiter?.resume()
    }

    /// Refuses new requests and lets the task commit what is queued.
    func stop() async {
        queue.withLockedValue { $0.accepting = false }
        wake()
        ticker?.cancel()
        await task?.value
    }

    private func run() async {
        while true {
            let (taken, accepting) = await take()
            if taken.isEmpty && !accepting { return }
            await process(taken)
            if ContinuousClock.now >= nextRetention {
                await runRetention(untilDone: false)
            }
        }
    }

    /// Everything pending, waiting for a request (or a tick) when there is none.
    private func take() async -> ([Request], Bool) {
        while true {
            let (taken, dropped) = queue.withLockedValue { queue -> (([Request], Bool)?, Int) in
                let dropped = queue.droppedBroadcasts
                queue.droppedBroadcasts = 0
                if queue.pending.isEmpty && queue.accepting { return (nil, dropped) }
                defer {
                    queue.pending.removeAll()
                    queue.broadcastBytes = 0
                }
                return ((queue.pending, queue.accepting), dropped)
            }
            if dropped > 0 {
                logger.warning("live messages not sent to the other brokers: the cluster journal is behind", metadata: [
                    "dropped": "\(dropped)",
                ])
            }
            if let taken { return taken }
            await withCheckedContinuation { (woken: CheckedContinuation<Void, Never>) in
                let resumeNow = queue.withLockedValue { queue -> Bool in
                    if !queue.pending.isEmpty || !queue.accepting { return true }
                    queue.waiter = woken
                    return false
                }
                if resumeNow { woken.resume() }
            }
            if ContinuousClock.now >= nextRetention { return ([], true) }
        }
    }

    private func process(_ requests: [Request]) async {
        var start = 0
        while start < requests.count {
            switch requests[start] {
            case .clear(let filter, let completion):
                completion(await clear(filter))
                start += 1
            case .applyRetention(let completion):
                await runRetention(untilDone: true)
                completion()
                start += 1
            default:
                var end = start, appends = 0
                scan: while end < requests.count {
                    switch requests[end] {
                    case .clear, .applyRetention: break scan
                    case .append:
                        if appends == configuration.maxBatchSize { break scan }
                        appends += 1
                    default: break
                    }
                    end += 1
                }
                await commit(Array(requests[start..<end]))
                start = end
            }
        }
    }

    /// One group, one transaction; see the type's comment.
    private func commit(_ group: [Request]) async {
        let batch = nextBatch
        nextBatch += 1
        var topics: [String] = [], payloads: [ByteBuffer] = [], binary: [Bool] = []
        var bytes = 0
        for request in group {
            guard case .append(let append) = request else { continue }
            topics.append(append.topic)
            payloads.append(append.payload)
            binary.append(append.isBinary)
            bytes += append.payload.readableBytes
        }
        await batches.register(batch, group)
        let count = topics.count, now = configuration.clock(), logger = self.logger, instance = self.instance
        let lastCommitted = self.lastCommitted
        let (allTopics, allPayloads, allBinary, allBytes) = (topics, payloads, binary, bytes)
        do {
            let before: Int64 = try await withTimeout(transactionTimeout) { [client] in
                try await client.withTransaction(logger: logger) { connection in
                    var before = Int64(lastCommitted)
                    if count > 0 {
                        let rows = try await connection.query("""
                            WITH alloc AS (
                                UPDATE broker_meta SET last_offset = last_offset + \(Int64(count)),
                                    message_count = message_count + \(Int64(count)),
                                    payload_bytes = payload_bytes + \(Int64(allBytes))
                                RETURNING last_offset - \(Int64(count)) AS before
                            ), new_topics AS (
                                INSERT INTO broker_topics (name) SELECT DISTINCT t FROM unnest(\(allTopics)::text[]) AS t
                                ON CONFLICT DO NOTHING
                            ), inserted AS (
                                INSERT INTO broker_messages (msg_offset, topic, payload, is_binary, timestamp_ms)
                                SELECT alloc.before + u.ord, u.t, u.p, u.b, \(now)
                                FROM alloc, unnest(\(allTopics)::text[], \(allPayloads)::bytea[], \(allBinary)::boolean[])
                                    WITH ORDINALITY AS u(t, p, b, ord)
                            )
                            SELECT before FROM alloc
                            """, logger: logger)
                        for try await value in rows.decode(Int64.self) { before = value }
                    }
                    let chunks = Self.notification(group, before: UInt64(before), writer: instance, batch: batch).encodedChunks()
                    try await connection.query("""
                        SELECT pg_notify(\(FeedNotification.channel), c)
                        FROM (SELECT c FROM unnest(\(chunks)::text[]) WITH ORDINALITY AS x(c, i) ORDER BY i) AS ordered
                        """, logger: logger)
                    return before
                }
            }
            healthy.store(true, ordering: .relaxed)
            retention.noteAppends(to: topics)
            self.lastCommitted = UInt64(before) + UInt64(count)
            batches.committed(batch, before: UInt64(before))
        } catch {
            healthy.store(false, ordering: .relaxed)
            batches.failed(batch)
            let reason = describe(error)
            logger.error("cluster journal commit failed", metadata: ["error": "\(reason)", "appends": "\(count)"])
            fail(group, .failed(reason))
            queue.withLockedValue { $0.runEnded }?()
        }
    }

    /// The notification of a group whose appends took the offsets after `before`.
    static func notification(_ group: [Request], before: UInt64, writer: String, batch: UInt64) -> FeedNotification {
        var offset = before
        var entries: [FeedNotification.Entry] = []
        for request in group {
            switch request {
            case .append(let append):
                offset += 1
                let payload = append.payload
                entries.append(.retained(
                    offset: offset, topic: append.topic, isBinary: append.isBinary,
                    payload: payload.readableBytes <= FeedNotification.inlinePayloadLimit ? payload : nil))
            case .broadcast(let entry):
                entries.append(.live(topic: entry.topic, isBinary: entry.isBinary, payload: entry.payload))
            default:
                break
            }
        }
        return FeedNotification(writer: writer, batch: batch, entries: entries)
    }

    /// Fails requests that will not be committed.
    private func fail(_ requests: [Request], _ error: JournalError) {
        let followed = feed.followedOffset
        for request in requests {
            switch request {
            case .append(let append): append.completed(.failure(error))
            case .snapshot(let completion): completion(followed)
            case .broadcast: break
            case .clear(_, let completion): completion(.failure(error))
            case .applyRetention(let completion): completion()
            }
        }
    }

    /// Deletes the messages of the topics matching `filter`, raising their `pruned_through`.
    private func clear(_ filter: String) async -> Result<Int, JournalError> {
        let logger = self.logger
        do {
            let removed: Int = try await withTimeout(transactionTimeout) { [client] in
                try await client.withTransaction(logger: logger) { connection in
                    // The meta row first, in the order every transaction takes its locks.
                    try await connection.query("SELECT 1 FROM broker_meta FOR UPDATE", logger: logger)
                    let names = try await PostgresQueries.topics(matching: filter, connection, logger: logger)
                    guard !names.isEmpty else { return 0 }
                    var removed = 0
                    for try await value in try await connection.query("""
                        WITH deleted AS (
                            DELETE FROM broker_messages WHERE topic = ANY(\(names)::text[])
                            RETURNING topic, msg_offset, length(payload) AS bytes
                        ), raised AS (
                            UPDATE broker_topics AS t SET pruned_through = greatest(t.pruned_through, d.last)
                            FROM (SELECT topic, max(msg_offset) AS last FROM deleted GROUP BY topic) AS d
                            WHERE t.name = d.topic
                        ), counted AS (
                            UPDATE broker_meta SET
                                message_count = message_count - (SELECT count(*) FROM deleted),
                                payload_bytes = payload_bytes - (SELECT coalesce(sum(bytes), 0) FROM deleted)
                        )
                        SELECT count(*)::bigint FROM deleted
                        """, logger: logger).decode(Int64.self) {
                        removed = Int(value)
                    }
                    try await PostgresRetention.dropEmptyTopics(names, connection, logger: logger)
                    return removed
                }
            }
            logger.info("journal cleared retained messages", metadata: ["filter": "\(filter)", "messages": "\(removed)"])
            return .success(removed)
        } catch {
            logger.error("journal clear failed", metadata: ["filter": "\(filter)", "error": "\(describe(error))"])
            return .failure(.failed(describe(error)))
        }
    }

    private func runRetention(untilDone: Bool) async {
        nextRetention = ContinuousClock.now + max(configuration.pruneInterval, .seconds(1))
        repeat {
            do {
                let hasMore = try await withTimeout(transactionTimeout) { [retention, client] in
                    try await retention.pass(client)
                }
                if !hasMore || !untilDone { return }
            } catch {
                logger.error("journal retention pass failed", metadata: ["error": "\(describe(error))"])
                return
            }
        } while true
    }
}
