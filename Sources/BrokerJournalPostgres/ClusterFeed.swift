import BrokerJournal
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO

/// How this broker follows the cluster: one connection that LISTENs on `FeedNotification.channel`
/// and one task that processes what arrives, strictly in order (the journal's completion
/// "thread").
///
/// Every committed group of every broker, this one's included, arrives as a notification in
/// commit order, which is offset order (see `PostgresWriter`). For this broker's groups the task
/// completes the requests (append completions with their offsets, snapshots); for the others'
/// it hands each message to the broker (`onRemotePublication`): retained ones in offset order,
/// reading from the journal those sent by reference, and live ones where they stand. So every
/// broker hands its loops the same retained messages in the same order.
///
/// `followedOffset` is the highest offset processed. An offset past `followedOffset + 1` means
/// a gap (a notification missed): the task reads the missing rows from the journal first. When
/// the listening connection is lost the task reconnects with backoff, then catches up from the
/// journal (pausing the writer meanwhile, `OwnBatches`): nothing committed is skipped, and memory
/// does not grow with how far behind it is (pages of `catchUpPage` rows). Live messages sent
/// while a broker was not listening are not kept anywhere and are lost for it.
///
/// What to do with each event is decided by `FeedStateMachine` (a batch's steps) and
/// `JournalCatchUp` (a journal read's); this class does their I/O: listening, reads with
/// retries, the writer's gate, completions.
final class ClusterFeed: @unchecked Sendable {
    private enum Event {
        case listening
        case notification(String)
        case lost
    }

    private struct Shared {
        var isListening = false
        var listeningWaiters: [CheckedContinuation<Void, Never>] = []
        var remote: (@Sendable (RemotePublication) -> Void)?
        var runEnded: (@Sendable () -> Void)?
        var followed: UInt64 = 0
        var catchUps = 0
        var overflows = 0
        /// Set while a test holds the processing task (`holdProcessing`); resumed on release.
        var hold: [CheckedContinuation<Void, Never>]?
    }

    /// Notifications (at most 8 kB each) waiting for the processing task; past this the feed
    /// drops its connection and catches up from the journal instead of growing memory.
    static let defaultMaxBuffered = 4_096
    static let catchUpPage = 1_000

    private let url: PostgresURL
    private let client: PostgresClient
    private let eventLoop: any EventLoop
    private let instance: String
    private let batches: OwnBatches
    private let logger: Logger
    private let shared = NIOLockedValueBox(Shared())
    private let events: AsyncStream<Event>
    private let eventSink: AsyncStream<Event>.Continuation
    /// Notifications yielded and not yet taken by the processing task. The stream itself is
    /// unbounded so that `lost` and `listening` are never dropped; this count bounds it.
    private let backlog: NIOLockedValueBox<FeedBacklog>
    private var listenTask: Task<Void, Never>?
    private var processTask: Task<Void, Never>?

    // Processing task only.
    private var machine: FeedStateMachine

    init(
        url: PostgresURL, client: PostgresClient, eventLoop: any EventLoop, instance: String, batches: OwnBatches,
        maxBuffered: Int = ClusterFeed.defaultMaxBuffered, logger: Logger
    ) {
        backlog = NIOLockedValueBox(FeedBacklog(limit: maxBuffered))
        machine = FeedStateMachine(instance: instance)
        self.url = url
        self.client = client
        self.eventLoop = eventLoop
        self.instance = instance
        self.batches = batches
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: Event.self)
    }

    var isListening: Bool { shared.withLockedValue { $0.isListening } }
    var followedOffset: UInt64 { shared.withLockedValue { $0.followed } }
    /// Catch-ups from the journal after a reconnection (for tests and logs).
    var catchUps: Int { shared.withLockedValue { $0.catchUps } }
    /// Times the listening side dropped its connection because processing fell behind.
    var overflows: Int { shared.withLockedValue { $0.overflows } }

    /// Stops the processing task before its next event until `releaseProcessing()`, without
    /// blocking a thread: notifications then pile up as they would behind a slow broker (tests).
    func holdProcessing() {
        shared.withLockedValue { shared in
            if shared.hold == nil { shared.hold = [] }
        }
    }

    func releaseProcessing() {
        let waiting = shared.withLockedValue { shared -> [CheckedContinuation<Void, Never>] in
            defer { shared.hold = nil }
            return shared.hold ?? []
        }
        waiting.forEach { $0.resume() }
    }

    private func waitWhileHeld() async {
        guard shared.withLockedValue({ $0.hold != nil }) else { return }
        await withCheckedContinuation { (released: CheckedContinuation<Void, Never>) in
            let held = shared.withLockedValue { shared -> Bool in
                guard shared.hold != nil else { return false }
                shared.hold!.append(released)
                return true
            }
            if !held { released.resume() }
        }
    }

    func onRemotePublication(_ handler: @escaping @Sendable (RemotePublication) -> Void) {
        shared.withLockedValue { $0.remote = handler }
    }

    func onRunEnded(_ handler: @escaping @Sendable () -> Void) {
        shared.withLockedValue { $0.runEnded = handler }
    }

    func start() {
        listenTask = Task { await listen() }
        processTask = Task { await process() }
    }

    func stop() async {
        listenTask?.cancel()
        await listenTask?.value
        eventSink.finish()
        releaseProcessing()
        processTask?.cancel()
        await processTask?.value
        batches.openGate()
    }

    /// Returns once the feed listens and has caught up.
    func waitUntilListening() async {
        await withCheckedContinuation { (ready: CheckedContinuation<Void, Never>) in
            let now = shared.withLockedValue { shared -> Bool in
                if !shared.isListening { shared.listeningWaiters.append(ready) }
                return shared.isListening
            }
            if now { ready.resume() }
        }
    }

    // MARK: Listening

    private struct Overflow: Error {}

    private func listen() async {
        var backoff: Duration = .milliseconds(100)
        var connectionID = 0
        var quiet = logger
        quiet.logLevel = max(logger.logLevel, .notice)
        while !Task.isCancelled {
            do {
                connectionID += 1
                let connection = try await PostgresConnection.connect(
                    on: eventLoop, configuration: try url.connectionConfiguration(), id: connectionID, logger: quiet)
                do {
                    try await connection.listen(on: FeedNotification.channel) { notifications in
                        eventSink.yield(.listening)
                        backoff = .milliseconds(100)
                        for try await notification in notifications {
                            guard backlog.withLockedValue({ $0.admit() }) else { throw Overflow() }
                            eventSink.yield(.notification(notification.payload))
                        }
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch is Overflow {
                shared.withLockedValue { $0.overflows += 1 }
                logger.warning("cluster feed fell behind; catching up from the journal")
            } catch {
                if Task.isCancelled { break }
                logger.warning("cluster feed lost its connection; reconnecting", metadata: [
                    "error": "\(describe(error))", "retry_in": "\(backoff)",
                ])
            }
            eventSink.yield(.lost)
            if Task.isCancelled { break }
            try? await Task.sleep(for: backoff)
            backoff = min(backoff * 2, .seconds(5))
        }
    }

    // MARK: Processing

    private func process() async {
        for await event in events {
            await waitWhileHeld()
            switch event {
            case .listening:
                guard await caughtUp() else { return }
                let waiters = shared.withLockedValue { shared -> [CheckedContinuation<Void, Never>] in
                    shared.isListening = true
                    defer { shared.listeningWaiters.removeAll() }
                    return shared.listeningWaiters
                }
                waiters.forEach { $0.resume() }
            case .lost:
                machine.lost()
                shared.withLockedValue { $0.isListening = false }
            case .notification(let payload):
                backlog.withLockedValue { $0.take() }
                guard let batch = machine.received(payload, dropped: { reason in
                    logger.error("cluster feed dropped a notification", metadata: ["reason": "\(reason)"])
                }) else { continue }
                guard await handle(batch) else { return }
                runEnded()
            }
        }
    }

    private func runEnded() {
        shared.withLockedValue { $0.runEnded }?()
    }

    private func record(followed offset: UInt64) {
        machine.record(followed: offset)
        let followed = machine.followed ?? offset
        shared.withLockedValue { $0.followed = followed }
    }

    /// On (re)connection: the first time, starts from the journal's last offset; later, reads
    /// everything committed since `followed` with the writer paused. The writer is paused only
    /// while an attempt runs: between failed attempts (PostgreSQL unreachable) it goes on, and
    /// fails its groups, rather than waiting. False once cancelled.
    private func caughtUp() async -> Bool {
        switch machine.listening() {
        case .readStartingOffset:
            guard let last = await retrying({ try await PostgresQueries.lastOffset(self.client) }) else { return false }
            machine.started(at: last)
            record(followed: last)
            return true
        case .catchUp(let from):
            var backoff: Duration = .milliseconds(100)
            while !Task.isCancelled {
                await batches.closeGate()
                do {
                    let last = try await withTimeout(.seconds(10)) { try await PostgresQueries.lastOffset(self.client) }
                    if last > from {
                        logger.info("cluster feed catching up from the journal", metadata: ["from": "\(from)", "to": "\(last)"])
                    }
                    try await advance(through: last)
                    batches.openGate()
                    runEnded()
                    machine.caughtUp()
                    shared.withLockedValue { $0.catchUps += 1 }
                    return true
                } catch {
                    batches.openGate()
                    runEnded()
                    if Task.isCancelled { break }
                    logger.warning("cluster feed cannot catch up from the journal; retrying", metadata: ["error": "\(describe(error))"])
                    try? await Task.sleep(for: backoff)
                    backoff = min(backoff * 2, .seconds(5))
                }
            }
            return false
        }
    }

    /// One batch of a notification. False once cancelled.
    private func handle(_ batch: FeedNotification) async -> Bool {
        guard machine.followed != nil else { return true }
        let own = batch.writer == instance ? await batches.awaitCommitted(batch.batch) : nil
        var referenced: [UInt64: ByteBuffer] = [:]
        let byReference = machine.referencedOffsets(in: batch, isOwn: own != nil)
        if !byReference.isEmpty {
            guard let rows = await retrying({ try await PostgresQueries.rows(at: byReference, self.client) }) else { return false }
            for row in rows { referenced[row.offset] = row.payload }
        }
        let remote = shared.withLockedValue { $0.remote }
        for step in machine.plan(batch, own: own, referenced: referenced) {
            guard await perform(step, remote) else { return false }
        }
        return true
    }

    /// Does one step of `FeedStateMachine`'s; false once cancelled.
    private func perform(_ step: FeedStateMachine.Step, _ remote: (@Sendable (RemotePublication) -> Void)?) async -> Bool {
        switch step {
        case .deliver(let publication):
            remote?(publication)
            if let offset = publication.offset { record(followed: offset) }
        case .completeOwn(let own):
            completeOwn(own)
        case .skip(let offset):
            record(followed: offset)
        case .readJournal(let target, let except):
            return await retryingAdvance(through: target, except: except)
        }
        return true
    }

    /// Completes one of our committed groups: its appends with their offsets, its snapshots with
    /// the offset followed at their place.
    private func completeOwn(_ own: OwnBatches.Committed) {
        var offset = own.before
        for request in own.requests {
            switch request {
            case .append(let append):
                offset += 1
                record(followed: offset)
                append.completed(.success(offset))
            case .snapshot(let completion):
                completion(max(machine.followed ?? 0, offset))
            default:
                break
            }
        }
        batches.remove(own.batch)
    }

    /// `advance` until it succeeds; false once cancelled.
    private func retryingAdvance(through target: UInt64, except: UInt64? = nil) async -> Bool {
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                try await advance(through: target, except: except)
                return true
            } catch {
                if Task.isCancelled { break }
                logger.warning("cluster feed cannot read the journal; retrying", metadata: ["error": "\(describe(error))"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return false
    }

    /// Processes every committed offset up to `target` from the journal (`JournalCatchUp`).
    /// Throws when a read fails; what it processed stays processed, so calling it again goes on
    /// from there.
    private func advance(through target: UInt64, except: UInt64? = nil) async throws {
        guard let from = machine.followed else { return }
        var catchUp = JournalCatchUp(from: from, through: target, own: batches.committedGroups(), except: except)
        let remote = shared.withLockedValue { $0.remote }
        while let page = catchUp.nextPage {
            let rows = try await withTimeout(.seconds(10)) {
                try await PostgresQueries.rows(after: page.after, through: page.through, limit: Self.catchUpPage, self.client)
            }
            for step in catchUp.received(rows) { _ = await perform(step, remote) }
            runEnded()
        }
        for step in catchUp.finish() { _ = await perform(step, remote) }
        record(followed: catchUp.followed)
    }

    /// Runs `read` until it succeeds (backing off while PostgreSQL is unreachable); nil once
    /// cancelled.
    private func retrying<T: Sendable>(_ read: @escaping @Sendable () async throws -> T) async -> T? {
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            do {
                return try await withTimeout(.seconds(10), read)
            } catch {
                if Task.isCancelled { return nil }
                logger.warning("cluster feed cannot read the journal; retrying", metadata: ["error": "\(describe(error))"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
            }
        }
        return nil
    }
}
