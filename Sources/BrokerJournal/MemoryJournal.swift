import BrokerProtocol
import Dispatch
import NIOCore

/// An in-memory `Journal` for tests of the server, with the same ordering contract as
/// `SQLiteJournal`.
///
/// Every operation runs on one serial dispatch queue that owns all state: appends get their
/// offsets and complete in submission order, a snapshot completes after every append submitted
/// before it, and reads complete their futures on the event loop given. Retention applies only
/// `maxMessagesPerTopic` (with per-filter overrides), at each append. Nothing survives the process.
public final class MemoryJournal: Journal, @unchecked Sendable {
    public let epoch: String

    private let queue = DispatchQueue(label: "broker-memory-journal")
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
        clock: @escaping @Sendable () -> Int64 = JournalConfiguration.systemClock
    ) {
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
        queue.sync { completionRunEnded = handler }
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
            if isClosed {
                promise.fail(JournalError.closed)
            } else {
                promise.succeed(body())
            }
        }
        return promise.futureResult
    }
}
