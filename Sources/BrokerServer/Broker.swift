import BrokerJournal
import BrokerProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// The state every connection shares: configuration, the journal and one fan-out shard per
/// event loop. Immutable after start, so it is read from any thread without locks.
final class Broker: Sendable {
    let configuration: BrokerConfiguration
    let journal: any Journal
    let shards: [FanoutShard]
    let logger: Logger
    let requestLimits: RequestLimits
    let metrics: BrokerMetrics
    private let sessionCounter = NIOLockedValueBox<UInt64>(0)
    private let sessionPrefix = String(UInt32.random(in: 0...UInt32.max), radix: 16)

    init(
        configuration: BrokerConfiguration, journal: any Journal, eventLoops: [any EventLoop], logger: Logger,
        metrics: BrokerMetrics = .disabled
    ) {
        self.metrics = metrics
        self.configuration = configuration
        self.journal = journal
        self.shards = eventLoops.map { FanoutShard(eventLoop: $0) }
        self.logger = logger
        self.requestLimits = RequestLimits(maxTopicBytes: configuration.maxTopicBytes)
    }

    func shard(for eventLoop: any EventLoop) -> FanoutShard {
        for shard in shards where shard.eventLoop === eventLoop { return shard }
        preconditionFailure("event loop is not one of the broker's")
    }

    func nextSessionID() -> String {
        let number = sessionCounter.withLockedValue { value -> UInt64 in
            value += 1
            return value
        }
        return "\(sessionPrefix)-\(number)"
    }

    let startedAt = NIODeadline.now()

    /// Hands `message` to every shard from the journal writer thread, through the loops'
    /// mailboxes (one task per loop per group commit rather than per message). Called in offset
    /// order, so every loop receives retained messages in offset order.
    func fanOutFromWriter(_ message: OutboundMessage) {
        for shard in shards { shard.mailbox.post(.deliver(message)) }
    }

    /// Hands `message` to every shard from an event loop: directly to the caller's own loop,
    /// through the mailbox of each other loop. Every cross-loop hand-off (from loops and from the
    /// writer) goes through the same per-loop mailbox, which is what keeps one publisher's
    /// messages in order: a mailbox runs its items in the order they were posted. (Separate
    /// `execute` tasks would not mix safely with mailbox posts: a post can join a drain task
    /// enqueued before them.)
    func fanOut(_ message: OutboundMessage) {
        for shard in shards {
            if shard.eventLoop.inEventLoop {
                shard.deliver(message)
            } else {
                shard.mailbox.post(.deliver(message))
            }
        }
    }
}
