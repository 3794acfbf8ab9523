import BrokerJournal
import NIOCore

/// What the cluster feed does with what reaches it, decided without PostgreSQL: `ClusterFeed`
/// performs the reads and completions these decisions name, in the order given, and reports back
/// (`record(followed:)`), so each path (a gap, a reconnection's catch-up, one of this broker's
/// groups) is tested alone (FeedStateMachineTests).
///
/// `followed` is the highest offset processed: every retained message up to it was handed on or
/// completed, in offset order. It only grows.
struct FeedStateMachine {
    /// One thing to do, in order. Each raises `followed` once done (`ClusterFeed.perform`).
    enum Step {
        /// Hand another broker's message on (retained: `offset` is set and becomes `followed`).
        case deliver(RemotePublication)
        /// Complete one of this broker's committed groups: its appends took the offsets after
        /// `before`.
        case completeOwn(OwnBatches.Committed)
        /// Process every committed offset up to `through` from the journal (`JournalCatchUp`),
        /// skipping our group `except` (completed by the next step): a gap, or other brokers'
        /// groups that committed before ours.
        case readJournal(through: UInt64, except: UInt64?)
        /// Nothing to hand on for `offset` (sent by reference and pruned since); it is processed.
        case skip(offset: UInt64)
    }

    /// On (re)connection.
    enum OnListening: Equatable {
        /// The first connection: start after the journal's last offset (nothing before it was
        /// ever this broker's to deliver).
        case readStartingOffset
        /// A reconnection: pause the writer, read everything committed after `from` up to the
        /// journal's last offset, then let it go on.
        case catchUp(from: UInt64)
    }

    let instance: String
    private(set) var followed: UInt64?
    /// Listening and caught up (`/readyz`).
    private(set) var isListening = false
    private var assembler = FeedAssembler()

    init(instance: String) {
        self.instance = instance
    }

    mutating func listening() -> OnListening {
        guard let followed else { return .readStartingOffset }
        return .catchUp(from: followed)
    }

    /// The first connection's starting offset was read.
    mutating func started(at last: UInt64) {
        record(followed: last)
        isListening = true
    }

    /// A reconnection's catch-up reached the journal's last offset.
    mutating func caughtUp() {
        isListening = true
    }

    /// The listening connection was lost (or dropped because processing fell behind): what was
    /// half assembled will not be completed (NOTIFY delivers nothing twice, nothing missed).
    mutating func lost() {
        isListening = false
        assembler = FeedAssembler()
    }

    /// A notification's payload; a whole batch once its last chunk arrived.
    mutating func received(_ payload: String, dropped: (String) -> Void) -> FeedNotification? {
        assembler.add(payload, dropped: dropped)
    }

    mutating func record(followed offset: UInt64) {
        followed = max(followed ?? 0, offset)
    }

    /// Offsets of the batch's retained messages sent by reference and not processed yet: read
    /// them (`PostgresQueries.rows(at:)`) before `plan`. None for our own committed group.
    func referencedOffsets(in batch: FeedNotification, isOwn: Bool) -> [UInt64] {
        guard let followed, !isOwn else { return [] }
        return batch.entries.compactMap { entry -> UInt64? in
            if case .retained(let offset, _, _, nil) = entry, offset > followed { return offset }
            return nil
        }
    }

    /// The steps for one batch. `own` is this broker's committed group the batch reports (nil
    /// when another broker's, or ours that failed here and committed after all: then delivered
    /// as another broker's); `referenced` holds the payloads of `referencedOffsets` (a message
    /// pruned meanwhile is missing and skipped).
    func plan(_ batch: FeedNotification, own: OwnBatches.Committed?, referenced: [UInt64: ByteBuffer]) -> [Step] {
        guard var followed else { return [] }  // not started: the starting offset is past it
        if let own {
            var steps: [Step] = []
            // Other brokers' groups that committed before ours and whose notifications were
            // missed: their rows first, so that offsets stay in order.
            if own.before > followed { steps.append(.readJournal(through: own.before, except: own.batch)) }
            steps.append(.completeOwn(own))
            return steps
        }
        var steps: [Step] = []
        for entry in batch.entries {
            switch entry {
            case .retained(let offset, let topic, let isBinary, let payload):
                guard offset > followed else { continue }  // processed already (a catch-up read it)
                if offset > followed + 1 { steps.append(.readJournal(through: offset - 1, except: nil)) }
                followed = offset
                if let payload = payload ?? referenced[offset] {
                    steps.append(.deliver(RemotePublication(topic: topic, payload: payload, isBinary: isBinary, offset: offset)))
                } else {
                    steps.append(.skip(offset: offset))
                }
            case .live(let topic, let isBinary, let payload):
                // Our own live messages were delivered here when they were published.
                guard batch.writer != instance else { continue }
                steps.append(.deliver(RemotePublication(topic: topic, payload: payload, isBinary: isBinary, offset: nil)))
            }
        }
        return steps
    }
}

/// Reading the journal from `followed` through `target`, page by page (`ClusterFeed.catchUpPage`
/// rows): other brokers' rows are delivered, this broker's committed groups completed where they
/// stand (their rows skipped). Memory does not grow with how far behind the feed is.
struct JournalCatchUp {
    let target: UInt64
    private(set) var followed: UInt64
    /// Our committed groups that end at or before `target`, in commit order.
    private var own: [OwnBatches.Committed]
    private var exhausted = false

    init(from followed: UInt64, through target: UInt64, own committed: [OwnBatches.Committed], except: UInt64? = nil) {
        self.followed = followed
        self.target = target
        own = committed.filter { $0.before + UInt64($0.appendCount) <= target && $0.batch != except }
    }

    /// The next page to read, `(after, through]`; nil when done (then `finish()`).
    var nextPage: (after: UInt64, through: UInt64)? {
        guard !exhausted, followed < target else { return nil }
        return (followed, target)
    }

    /// A page read from the journal, in offset order.
    mutating func received(_ rows: [PostgresQueries.Row]) -> [FeedStateMachine.Step] {
        if rows.isEmpty { exhausted = true }  // the rest was pruned
        var steps: [FeedStateMachine.Step] = []
        for row in rows {
            steps += completeOwn(before: row.offset)
            guard row.offset > followed else { continue }  // one of our groups' rows
            followed = row.offset
            steps.append(.deliver(RemotePublication(topic: row.topic, payload: row.payload, isBinary: row.isBinary, offset: row.offset)))
        }
        return steps
    }

    /// The groups left to complete; `followed` reaches `target` (what is not in the journal any
    /// more was pruned).
    mutating func finish() -> [FeedStateMachine.Step] {
        let steps = completeOwn(before: target + 1)
        followed = max(followed, target)
        return steps
    }

    private mutating func completeOwn(before offset: UInt64) -> [FeedStateMachine.Step] {
        var steps: [FeedStateMachine.Step] = []
        while let next = own.first, next.before < offset {
            own.removeFirst()
            followed = max(followed, next.before + UInt64(next.appendCount))
            steps.append(.completeOwn(next))
        }
        return steps
    }
}

/// Notifications waiting for the processing task: past `limit` the feed drops its connection and
/// catches up from the journal instead of growing memory.
struct FeedBacklog {
    let limit: Int
    private(set) var waiting = 0

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    /// A notification arrived: false when it would exceed the limit (the feed overflows).
    mutating func admit() -> Bool {
        guard waiting < limit else { return false }
        waiting += 1
        return true
    }

    /// The processing task took one.
    mutating func take() {
        waiting = max(0, waiting - 1)
    }
}
