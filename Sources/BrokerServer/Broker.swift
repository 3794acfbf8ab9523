import Atomics
import BrokerJournal
import BrokerProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The state every connection shares: configuration, the journal and one fan-out shard per
/// event loop. Immutable after start, so it is read from any thread without locks, except
/// `currentConfiguration`, which a reload replaces.
final class Broker: Sendable {
    /// The configuration the broker started with: what is read once (listeners, loops,
    /// compression, per-message limits).
    let configuration: BrokerConfiguration
    /// The configuration in force: `configuration` with what the last reload changed
    /// (`BrokerConfiguration.reloading(from:)`). Read once per connection or per request.
    var currentConfiguration: BrokerConfiguration { live.withLockedValue { $0 } }
    private let live: NIOLockedValueBox<BrokerConfiguration>
    let journal: any Journal
    /// The journal as a cluster journal, in cluster mode (docs/cluster.md).
    let cluster: (any ClusterJournal)?
    let shards: [FanoutShard]
    /// Where journal completions stage their hand-offs to the loops.
    let outbox: JournalOutbox
    let logger: Logger
    let requestLimits: RequestLimits
    let metrics: BrokerMetrics
    private let sessionCounter = NIOLockedValueBox<UInt64>(0)
    /// Open connections that negotiated permessage-deflate: publishes are compressed only while
    /// there is at least one.
    let compressingConnections = ManagedAtomic<Int>(0)
    /// WebSocket connections admitted and not yet closed, in total and per IP address.
    let admission: ConnectionAdmission
    /// Bytes of the retained publishes of WebSocket connections handed to the journal and not
    /// yet completed (journal backpressure: `maxPendingRetainedBytes`). Changed once per retained
    /// publish and once per completion, on the connections' loops.
    let pendingRetainedBytes = ManagedAtomic<Int>(0)
    /// `pendingRetainedBytes` now.
    var retainedBytesAwaitingJournal: Int { pendingRetainedBytes.load(ordering: .relaxed) }
    /// HTTP request body bytes held by every HTTP connection (`maxHTTPBodyBytesInFlight`).
    let httpBodyBudget: ByteBudget
    private let sessionPrefix = String(UInt32.random(in: 0...UInt32.max), radix: 16)

    init(
        configuration: BrokerConfiguration, journal: any Journal, eventLoops: [any EventLoop], logger: Logger,
        metrics: BrokerMetrics = .disabled
    ) {
        self.metrics = metrics
        self.configuration = configuration
        self.live = NIOLockedValueBox(configuration)
        self.journal = journal
        let makeCompressor = { () -> FrameCompressor? in
            guard configuration.compressionEnabled else { return nil }
            return FrameCompressor(level: configuration.compressionLevel, thresholdBytes: configuration.compressionThresholdBytes)
        }
        self.shards = eventLoops.enumerated().map {
            FanoutShard(
                eventLoop: $1, position: $0, compressor: makeCompressor(), maxFlushDelay: configuration.maxFlushDelay)
        }
        let outbox = JournalOutbox(
            mailboxes: shards.map(\.mailbox), metrics: metrics, compressingConnections: compressingConnections,
            compressor: makeCompressor())
        self.outbox = outbox
        journal.onCompletionRunEnded { outbox.post() }
        if let cluster = journal as? any ClusterJournal {
            cluster.onRemotePublication { outbox.deliverRemote($0) }
        }
        self.cluster = journal as? any ClusterJournal
        self.logger = logger
        self.requestLimits = RequestLimits(
            maxTopicBytes: configuration.maxTopicBytes, maxTopicLevels: configuration.maxTopicLevels)
        self.admission = ConnectionAdmission(
            maxConnections: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerIP)
        self.httpBodyBudget = ByteBudget(limit: configuration.maxHTTPBodyBytesInFlight)
    }

    /// Puts a reloaded configuration in force for the connections and requests that start from
    /// now on; the connection caps change at once.
    func reload(_ configuration: BrokerConfiguration) {
        live.withLockedValue { $0 = configuration }
        admission.setLimits(maxConnections: configuration.maxConnections, maxPerAddress: configuration.maxConnectionsPerIP)
    }

    func shard(for eventLoop: any EventLoop) -> FanoutShard {
        for shard in shards where shard.eventLoop === eventLoop { return shard }
        preconditionFailure("event loop is not one of the broker's")
    }

    /// The compressor for a frame shared by subscribers, or nil while no connection negotiated
    /// compression (then nothing is compressed at all). Called on `shard`'s loop.
    func sharedFrameCompressor(on shard: FanoutShard) -> FrameCompressor? {
        compressingConnections.load(ordering: .relaxed) > 0 ? shard.compressor : nil
    }

    func nextSessionID() -> String {
        let number = sessionCounter.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        return "\(sessionPrefix)-\(number)"
    }

    let startedAt = NIODeadline.now()

    /// In cluster mode, sends a live message to the other brokers, behind the retained publishes
    /// requested before it (so one publisher's order holds on every broker).
    func broadcastToCluster(topic: String, payload: ByteBuffer, isBinary: Bool) {
        cluster?.broadcast(JournalEntry(topic: topic, payload: payload, isBinary: isBinary))
    }

    /// Hands `message` to every shard from the loop of shard `origin`: directly to that shard,
    /// through the mailbox of each other loop. Every cross-loop hand-off (from loops and from the
    /// writer) goes through the same per-loop mailbox, which is what keeps one publisher's
    /// messages in order: a mailbox runs its items in the order they were posted. (Separate
    /// `execute` tasks would not mix safely with mailbox posts: a post can join a drain task
    /// enqueued before them.) The origin is named rather than found with `inEventLoop`, which
    /// cannot tell apart loops that share a thread (embedded loops in tests).
    func fanOut(_ message: OutboundMessage, from origin: FanoutShard) {
        origin.eventLoop.assertInEventLoop()
        for shard in shards {
            if shard === origin {
                shard.deliver(message)
            } else {
                shard.mailbox.post(.deliver(message))
            }
        }
    }
}
