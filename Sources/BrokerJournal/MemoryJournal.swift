import BrokerProtocol
import Dispatch
import NIOCore

/// An in-memory `Journal` for tests of the server, with the same ordering contract as
/// `SQLiteJournal`.
///
/// Every operation runs serially on one `Execution` that owns all state: appends get their
/// offsets and complete in submission order, a snapshot completes after every append submitted
/// before it, and reads complete their futures on the event loop given, in a later task.
/// Retention applies only `maxMessagesPerTopic` (with per-filter overrides), at each append.
/// Nothing survives the process.
public final class MemoryJournal: Journal, @unchecked Sendable {
    /// Where the journal's work runs.
    public enum Execution: Sendable {
        /// On a serial dispatch queue of its own, as SQLiteJournal's work runs on its writer.
        case serialQueue
        /// On the caller's thread, before the call returns (work requested by running work runs
        /// right after it): for tests on an EmbeddedEventLoop, which must not be touched from
        /// another thread, and for tests that want a commit to complete synchronously.
        case inline
    }

    public let epoch: String

    private let queue: SerialWork
    private let retention: RetentionPolicy
    private let clock: @Sendable () -> Int64

    // Queue only.
    private var isClosed = false
    private var lastOffset: UInt64 = 0
    private var topics: [String: TopicState] = [:]
    private var prunedMessages = 0
    private var completionRunEnded: (@Sendable () -> Void)?

    private struct TopicState {
        var records: [RetainedRecord] = []
        var prunedThrough: UInt64 = 0
        var maxMessages: Int
    }

    /// A new, empty journal; `epoch` defaults to a random one.
    public init(
        retention: RetentionPolicy = RetentionPolicy(),
        epoch: String? = nil,
        clock: @escaping @Sendable () -> Int64 = JournalConfiguration.systemClock,
        execution: Execution = .serialQueue
    ) {
        self.queue = SerialWork(execution)
        self.retention = retention
        self.epoch = epoch ?? Schema.makeEpoch()
        self.clock = clock
    }

    public func append(_ entry: any JournalAppendRequest) {
        queue.async { [self] in
            defer { completionRunEnded?() }
            guard !isClosed else { return entry.completed(.failure(.closed)) }
            lastOffset += 1
            let record = RetainedRecord(
                offset: lastOffset, topic: entry.topic, payload: entry.payload,
                isBinary: entry.isBinary, timestampMilliseconds: clock())
            var topic = topics[entry.topic]
                ?? TopicState(maxMessages: retention.limits(for: entry.topic).maxMessagesPerTopic)
            topic.records.append(record)
            let excess = topic.records.count - max(0, topic.maxMessages)
            if excess > 0 {
                topic.prunedThrough = topic.records[excess - 1].offset
                topic.records.removeFirst(excess)
                prunedMessages += excess
            }
            topics[entry.topic] = topic
            entry.completed(.success(lastOffset))
        }
    }

    public func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        queue.async { [self] in
            completion(lastOffset)
            completionRunEnded?()
        }
    }

    public func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        queue.sync { [self] in completionRunEnded = handler }
    }

    public func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        run(on: eventLoop) { [self] in
            var lower = query.after
            var newest = Int.max
            switch query.selection {
            case .since(let since): lower = max(lower, since)
            case .history(let count): newest = count
            }
            var candidates: [RetainedRecord] = []
            for (name, topic) in topics where Topic.matches(filter: query.filter, name: name) {
                let upToNow = topic.records.filter { $0.offset <= query.upTo }
                candidates += upToNow.suffix(max(0, newest)).filter { $0.offset > lower }
            }
            candidates.sort { $0.offset < $1.offset }
            let limit = max(1, query.limit)
            return ReplayPage(records: Array(candidates.prefix(limit)), isLast: candidates.count <= limit)
        }
    }

    public func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        run(on: eventLoop) { [self] in
            topics.contains { name, topic in
                topic.prunedThrough > offset && Topic.matches(filter: filter, name: name)
            }
        }
    }

    public func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        run(on: eventLoop) { [self] in
            var removed = 0
            for (name, var topic) in topics where Topic.matches(filter: filter, name: name) {
                guard let last = topic.records.last else { continue }
                removed += topic.records.count
                topic.prunedThrough = max(topic.prunedThrough, last.offset)
                topic.records.removeAll()
                topics[name] = topic
            }
            return removed
        }
    }

    public func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        run(on: eventLoop) { [self] in
            let kept = topics.values.filter { !$0.records.isEmpty }
            return JournalStats(
                messages: kept.reduce(0) { $0 + $1.records.count },
                topics: kept.count,
                bytes: kept.reduce(0) { $0 + $1.records.reduce(0) { $0 + $1.payload.readableBytes } },
                firstOffset: kept.compactMap { $0.records.first?.offset }.min() ?? 0,
                lastOffset: lastOffset,
                prunedMessages: prunedMessages)
        }
    }

    public func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        run(on: eventLoop) { [self] in
            let prefix = Array(query.prefix.utf8)
            let after = query.after.map { Array($0.utf8) }
            let matching = topics.compactMap { name, topic -> (bytes: [UInt8], RetainedTopic)? in
                guard let last = topic.records.last else { return nil }
                let bytes = Array(name.utf8)
                guard bytes.starts(with: prefix), after.map({ $0.lexicographicallyPrecedes(bytes) }) ?? true else { return nil }
                return (bytes, RetainedTopic(topic: name, messages: topic.records.count, lastOffset: last.offset))
            }.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
            let limit = max(1, query.limit)
            return RetainedTopicsPage(topics: matching.prefix(limit).map(\.1), isLast: matching.count <= limit)
        }
    }

    public func close() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            queue.async { [self] in
                isClosed = true
                done.resume()
            }
        }
    }

    /// Runs `body` on the queue and completes the future on `eventLoop`; fails once closed.
    private func run<T: Sendable>(on eventLoop: any EventLoop, _ body: @escaping @Sendable () -> T) -> EventLoopFuture<T> {
        let promise = eventLoop.makePromise(of: T.self)
        queue.async { [self] in
            let result: Result<T, any Error> = isClosed ? .failure(JournalError.closed) : .success(body())
            // A later task of the loop, as a read on another thread would complete.
            eventLoop.execute { promise.completeWith(result) }
        }
        return promise.futureResult
    }
}

/// Runs closures one at a time, in the order submitted: on a dispatch queue, or inline on the
/// submitting thread (a closure submitted while one runs is queued and run by the thread that is
/// already running them).
private final class SerialWork: Sendable {
    private struct Inline {
        var jobs: [@Sendable () -> Void] = []
        var running = false
    }

    private let queue: DispatchQueue?
    private let inline = Locked(Inline())

    init(_ execution: MemoryJournal.Execution) {
        switch execution {
        case .serialQueue: queue = DispatchQueue(label: "broker-memory-journal")
        case .inline: queue = nil
        }
    }

    func async(_ job: @escaping @Sendable () -> Void) {
        if let queue { return queue.async(execute: job) }
        let mustRun = inline.withLock { state -> Bool in
            state.jobs.append(job)
            if state.running { return false }
            state.running = true
            return true
        }
        guard mustRun else { return }
        while let next = inline.withLock({ state -> (@Sendable () -> Void)? in
            if state.jobs.isEmpty {
                state.running = false
                return nil
            }
            return state.jobs.removeFirst()
        }) {
            next()
        }
    }

    /// Runs `job` before returning, unless called from a running job (then it runs after it).
    func sync(_ job: @escaping @Sendable () -> Void) {
        if let queue { return queue.sync(execute: job) }
        async(job)
    }
}
