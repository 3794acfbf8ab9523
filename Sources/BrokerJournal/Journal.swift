import NIOCore

/// A retained message as the journal keeps it.
public struct RetainedRecord: Sendable, Equatable {
    /// Broker-wide, strictly increasing, never reused (also across restarts and pruning).
    public var offset: UInt64
    public var topic: String
    /// Raw JSON text for text messages, opaque bytes for binary ones.
    public var payload: ByteBuffer
    public var isBinary: Bool
    /// When the broker appended it, in milliseconds since 1970.
    public var timestampMilliseconds: Int64

    public init(offset: UInt64, topic: String, payload: ByteBuffer, isBinary: Bool, timestampMilliseconds: Int64) {
        self.offset = offset
        self.topic = topic
        self.payload = payload
        self.isBinary = isBinary
        self.timestampMilliseconds = timestampMilliseconds
    }
}

/// A retained publish on its way into the journal.
public struct JournalEntry: Sendable {
    public var topic: String
    public var payload: ByteBuffer
    public var isBinary: Bool

    public init(topic: String, payload: ByteBuffer, isBinary: Bool) {
        self.topic = topic
        self.payload = payload
        self.isBinary = isBinary
    }
}

/// A retained publish handed to the journal as an object of the caller's: the journal reads the
/// message from it and calls `completed` once, after the commit, on the completion thread. The
/// caller decides where the object is finally released: the broker lets it go on the event loop
/// that allocated it (with its payload), not on the writer, which keeps frees off the writer's
/// hot loop and out of another thread's malloc arena.
public protocol JournalAppendRequest: AnyObject, Sendable {
    var topic: String { get }
    /// Raw JSON text for text messages, opaque bytes for binary ones.
    var payload: ByteBuffer { get }
    var isBinary: Bool { get }
    func completed(_ result: Result<UInt64, JournalError>)
}

/// `append(entry, completion:)`'s request: the entry and a closure.
final class ClosureAppendRequest: JournalAppendRequest {
    let entry: JournalEntry
    let completion: @Sendable (Result<UInt64, JournalError>) -> Void

    init(_ entry: JournalEntry, _ completion: @escaping @Sendable (Result<UInt64, JournalError>) -> Void) {
        self.entry = entry
        self.completion = completion
    }

    var topic: String { entry.topic }
    var payload: ByteBuffer { entry.payload }
    var isBinary: Bool { entry.isBinary }
    func completed(_ result: Result<UInt64, JournalError>) { completion(result) }
}

/// Which retained messages a subscription asks for (PROTOCOL.md "Subscribe replay").
public enum ReplaySelection: Sendable, Equatable {
    /// The newest N messages of every matching topic.
    case history(Int)
    /// Every message on matching topics with an offset greater than this.
    case since(UInt64)
}

/// One page of a replay: every record matching `filter` and `selection` whose offset is in
/// `(after, upTo]`, in offset order, at most `limit` of them.
public struct ReplayQuery: Sendable, Equatable {
    public var filter: String
    public var selection: ReplaySelection
    /// Exclusive lower bound: the last offset of the previous page (0 for the first page).
    public var after: UInt64
    /// Inclusive upper bound: the high-water mark from `snapshot`, fixed for the whole replay.
    public var upTo: UInt64
    public var limit: Int
    /// What the replay's earlier pages learned about topics (nil: learn it again for this page).
    public var topicCache: ReplayTopicCache?

    public init(
        filter: String, selection: ReplaySelection, after: UInt64, upTo: UInt64, limit: Int,
        topicCache: ReplayTopicCache? = nil
    ) {
        self.filter = filter
        self.selection = selection
        self.after = after
        self.upTo = upTo
        self.limit = limit
        self.topicCache = topicCache
    }
}

/// What one replay learned about the topics it met, kept from page to page: per topic id, the
/// topic's name and lowest kept offset when it matches the replay's filter, nil when it does not.
///
/// A wildcard replay meets most of its topics on every page (a page is 512 records; 2,000 topics
/// written round-robin put about 400 of them on each). Without this, each page looked every one
/// of them up again, a query and a filter match per topic per page: 40 % of the reading thread's
/// time in a 1,000,000-message replay. One per replay (the filter, the selection and the upper
/// bound are the replay's), made by whoever reads the pages; they are read one after another,
/// and the lock makes that safe to rely on.
public final class ReplayTopicCache: @unchecked Sendable, Equatable {
    /// A replay over more topics than this starts again instead of growing without bound.
    static let maxEntries = 65_536
    private let entries = Locked<[Int64: (name: String, keptFrom: Int64)?]>([:])

    public init() {}

    func withEntries<T>(_ body: (inout [Int64: (name: String, keptFrom: Int64)?]) throws -> T) rethrows -> T {
        try entries.withLock { entries in
            if entries.count > Self.maxEntries { entries.removeAll() }
            return try body(&entries)
        }
    }

    public static func == (lhs: ReplayTopicCache, rhs: ReplayTopicCache) -> Bool { lhs === rhs }
}

extension ReplayQuery {
    /// What one page reads, the same for every journal: offsets above `lower` (the later of
    /// `after` and a `since`), at most `limit` records, and for `history` each topic's `newest`
    /// N; nil when the page is empty whatever the journal holds.
    package var pageBounds: (lower: UInt64, newest: Int?, limit: Int)? {
        var lower = after
        var newest: Int?
        switch selection {
        case .since(let since): lower = max(lower, since)
        case .history(let count):
            if count <= 0 { return nil }
            newest = count
        }
        guard lower < upTo else { return nil }
        return (lower, newest, max(1, limit))
    }
}

public struct ReplayPage: Sendable {
    public var records: [RetainedRecord]
    /// True when no record matching the query lies after this page.
    public var isLast: Bool

    public init(records: [RetainedRecord], isLast: Bool) {
        self.records = records
        self.isLast = isLast
    }
}

/// A page of the topics that hold retained messages (`GET /api/topics`): those whose name starts
/// with `prefix` and sorts after `after` (byte-wise, as SQLite's BINARY collation), at most `limit`.
public struct RetainedTopicsQuery: Sendable, Equatable {
    public var prefix: String
    /// Exclusive cursor: the last topic of the previous page; nil for the first page.
    public var after: String?
    public var limit: Int

    public init(prefix: String = "", after: String? = nil, limit: Int) {
        self.prefix = prefix
        self.after = after
        self.limit = limit
    }
}

/// One topic with retained messages: how many the journal keeps and the newest one's offset.
public struct RetainedTopic: Sendable, Equatable {
    public var topic: String
    public var messages: Int
    public var lastOffset: UInt64

    public init(topic: String, messages: Int, lastOffset: UInt64) {
        self.topic = topic
        self.messages = messages
        self.lastOffset = lastOffset
    }
}

public struct RetainedTopicsPage: Sendable, Equatable {
    /// In byte-wise order of their names.
    public var topics: [RetainedTopic]
    /// True when no topic matching the query lies after this page.
    public var isLast: Bool

    public init(topics: [RetainedTopic], isLast: Bool) {
        self.topics = topics
        self.isLast = isLast
    }
}

/// Figures for stats, logs and metrics.
public struct JournalStats: Sendable, Equatable {
    public var messages: Int
    public var topics: Int
    public var bytes: Int
    public var firstOffset: UInt64
    public var lastOffset: UInt64
    public var prunedMessages: Int

    public init(messages: Int = 0, topics: Int = 0, bytes: Int = 0, firstOffset: UInt64 = 0, lastOffset: UInt64 = 0, prunedMessages: Int = 0) {
        self.messages = messages
        self.topics = topics
        self.bytes = bytes
        self.firstOffset = firstOffset
        self.lastOffset = lastOffset
        self.prunedMessages = prunedMessages
    }
}

public enum JournalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The journal is closed or closing.
    case closed
    /// Another broker holds the data directory.
    case locked(path: String)
    /// The data directory or database cannot be used; the reason is one line for people.
    case unusable(String)
    /// A database operation failed.
    case failed(String)

    public var description: String {
        switch self {
        case .closed: return "journal is closed"
        case .locked(let path): return "data directory \(path) is in use by another broker (lock held)"
        case .unusable(let reason): return reason
        case .failed(let reason): return "journal operation failed: \(reason)"
        }
    }
}

/// The retained-message journal, the seam between the broker and its storage.
///
/// Threading contract, which the broker's ordering guarantees rest on:
/// - `append` never blocks the caller. Appends from every event loop are committed in groups by
///   one writer; an append's completion runs after its transaction committed.
/// - Completions (of `append` and `snapshot`) run serially on the writer, in the order the
///   requests were made (so appends complete in offset order), and must be quick (hop to an
///   event loop and return). So a caller that fans a message out from its completion hands
///   messages to each event loop in offset order; a `snapshot` completion reaches an event loop
///   after every message with an offset up to its high-water mark has been handed to that loop;
///   and a `snapshot` requested after an append and before another completes between the two
///   (the broker uses this to keep a live publish behind its publisher's uncommitted retained
///   one).
/// - After a run of completions the journal calls the handler given to `onCompletionRunEnded`.
/// - Reads (`replayPage`, `prunedAfter`, `clear`, `stats`, `retainedTopics`) run off the event loops and complete on the
///   event loop given.
public protocol Journal: AnyObject, Sendable {
    /// Names this journal; changes only when the journal is created anew.
    var epoch: String { get }

    /// Appends a retained message; calls `request.completed` with its offset once committed.
    func append(_ request: any JournalAppendRequest)

    /// Completes with the highest committed offset, in request order with append completions.
    func snapshot(completion: @escaping @Sendable (UInt64) -> Void)

    /// Registers `handler`, run on the completion thread each time a run of completions ends: once
    /// per group commit (once per completion where a journal has no groups). Completions stage
    /// their hand-offs to other threads and `handler` sends them, so a group of a thousand appends
    /// wakes each event loop once, not a thousand times. Register before the first append.
    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void)

    /// Reads one page of a replay.
    func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage>

    /// Whether retention (or clearing) removed any message after `offset` on a topic matching
    /// `filter`; a `since` replay is `recovered` only when this is false.
    func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool>

    /// Deletes the retained messages of every topic matching `filter`; completes with the count.
    func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int>

    /// Current figures.
    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats>

    /// One page of the topics that hold retained messages, with their counts (a read).
    func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage>

    /// Commits what is pending, stops the writer and releases the data directory.
    func close() async
}

extension Journal {
    /// Appends a retained message; completes with its offset once committed.
    public func append(_ entry: JournalEntry, completion: @escaping @Sendable (Result<UInt64, JournalError>) -> Void) {
        append(ClosureAppendRequest(entry, completion))
    }
}
