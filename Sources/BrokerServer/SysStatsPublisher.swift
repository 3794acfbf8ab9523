import BrokerProtocol
import NIOCore

/// Publishes the broker's figures (`/api/stats`'s JSON with per-second `rates`) to
/// `$sys/broker/stats` every `sys.stats-interval`: a plain, non-retained publish through the
/// normal fan-out from the first loop, on that loop's timer. Not counted as a publish received
/// (`messagesIn`); its deliveries count as any delivery. Subscribers need a permission covering
/// `$sys/broker/stats` (PROTOCOL.md: only a filter starting with the literal `$sys` level does).
enum SysStatsPublisher {
    static let topic = "$sys/broker/stats"

    /// Starts publishing every `interval` (the first after one interval); cancel the task to stop.
    /// The next figure is taken only after the previous one was published, so a slow journal
    /// read never piles up timers.
    static func start(_ broker: Broker, every interval: TimeAmount) -> RepeatedTask {
        let shard = broker.shards[0]
        let loop = shard.eventLoop
        // The figure before, for the rates; touched on `loop` only.
        let previous = NIOLoopBoundBox.makeEmptyBox(valueType: (stats: BrokerStats, at: NIODeadline).self, eventLoop: loop)
        return loop.scheduleRepeatedAsyncTask(initialDelay: interval, delay: interval) { _ in
            broker.stats(on: loop).map { stats in
                let now = loop.now
                let rates = previous.value.map { stats.rates(since: $0.stats, seconds: Double((now - $0.at).nanoseconds) / 1e9) }
                previous.value = (stats, now)
                let allocator = ByteBufferAllocator()
                let message = OutboundMessage(
                    topic: topic, payload: ByteBuffer(string: stats.json(rates: rates ?? .zero)), isBinary: false, offset: nil,
                    compressor: broker.sharedFrameCompressor(on: shard), allocator: allocator)
                broker.fanOut(message, from: shard)
            }.recover { error in
                broker.logger.debug("stats not published", metadata: ["error": "\(error)"])
            }
        }
    }
}

extension BrokerStats.Rates {
    static let zero = BrokerStats.Rates(messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0)
}
