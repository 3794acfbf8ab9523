import NIOCore

/// One event loop's share of the broker: the connections living on that loop and the index of
/// their subscriptions.
///
/// Everything here is confined to `eventLoop` (hence `@unchecked Sendable`: the broker keeps
/// references on every thread but only ever calls in through `eventLoop.execute`). A publish
/// reaches each shard once; the shard matches it against its own trie and writes the shared
/// frame to each matching connection, then flushes every connection it wrote to once per
/// event-loop tick (or, on a busy loop that keeps receiving frames, after holding them:
/// FlushPolicy.swift), so a busy subscriber gets many frames per `writev`.
final class FanoutShard: @unchecked Sendable {
    let eventLoop: any EventLoop
    /// Position in the broker's list of shards.
    let position: Int
    private let index = TopicTrie<WebSocketConnection>()
    /// Every open connection on this loop, for keepalive sweeps and shutdown.
    private(set) var connections: [WebSocketConnection] = []
    /// Connections written to since the last flush.
    private var dirty: [WebSocketConnection] = []
    /// `dirty` of the flush in progress; swapped with it so that neither array reallocates.
    private var flushing: [WebSocketConnection] = []
    private var flushScheduled = false
    /// Internal, not private, so that tests can stage an expensive last flush.
    var flushPolicy: FlushPolicy
    /// Bytes of broadcast frames queued since the last flush, for the flush policy.
    private var bytesSinceFlush = 0
    /// Frames (deliveries) of broadcasts queued since the last flush, for the flush policy.
    private var framesSinceFlush = 0
    /// Stamped on a connection when it receives a publish, so overlapping filters deliver once.
    private var deliverySequence: UInt64 = 0
    /// The close frames a lame-duck shutdown has yet to send (`closeSpread`).
    private var lameDuckCloses: [Scheduled<Void>] = []
    private var keepaliveTask: RepeatedTask?
    /// Where the journal writer posts fan-outs and completions for this loop.
    private(set) var mailbox: LoopMailbox!
    /// This loop's permessage-deflate compressor (nil when compression is off): for publishes
    /// made here, replays and echoes. Reset per message, so it holds no per-connection state.
    let compressor: FrameCompressor?

    var subscriptionCount: Int { index.count }
    /// Traffic figures of this loop, summed by `BrokerMetrics`.
    var counters = ShardCounters()

    init(eventLoop: any EventLoop, position: Int, compressor: FrameCompressor? = nil, maxFlushDelay: TimeAmount = .zero) {
        self.eventLoop = eventLoop
        self.flushPolicy = FlushPolicy(maxDelay: maxFlushDelay)
        self.position = position
        self.compressor = compressor
        self.mailbox = LoopMailbox(eventLoop: eventLoop) { [unowned self] message in self.deliver(message) }
    }

    // MARK: Connections

    func add(_ connection: WebSocketConnection) {
        eventLoop.assertInEventLoop()
        connection.shardSlot = connections.count
        connections.append(connection)
    }

    /// Returns whether `connection` was here (false on a second call).
    @discardableResult
    func remove(_ connection: WebSocketConnection) -> Bool {
        eventLoop.assertInEventLoop()
        let slot = connection.shardSlot
        guard slot >= 0, slot < connections.count, connections[slot] === connection else { return false }
        let last = connections.removeLast()
        if slot < connections.count {
            connections[slot] = last
            last.shardSlot = slot
        }
        connection.shardSlot = -1
        return true
    }

    // MARK: Subscriptions

    func subscribe(_ connection: WebSocketConnection, to filter: String) {
        eventLoop.assertInEventLoop()
        index.insert(filter, connection)
    }

    func unsubscribe(_ connection: WebSocketConnection, from filter: String) {
        eventLoop.assertInEventLoop()
        index.remove(filter, connection)
    }

    // MARK: Delivery

    /// Writes `message` to every connection on this loop with a matching subscription.
    func deliver(_ message: OutboundMessage) {
        eventLoop.assertInEventLoop()
        guard index.count > 0 else { return }
        currentSlots = (nil, nil)
        deliverySequence &+= 1
        let sequence = deliverySequence
        var delivered = 0
        index.forEachMatch(message.levels) { connection in
            guard connection.lastDeliverySequence != sequence else { return }
            connection.lastDeliverySequence = sequence
            connection.deliver(message)
            delivered &+= 1
        }
        if delivered > 0 {
            counters.delivered(message, count: delivered)
            bytesSinceFlush &+= delivered &* message.frame.readableBytes
            framesSinceFlush &+= delivered
        }
    }

    /// Called by a connection that wrote without flushing; the flush runs once, after the tasks
    /// already queued on the loop (typically further publishes) have run, or, on a loop whose
    /// flushes are expensive, once frames stop arriving (FlushPolicy.swift).
    func markDirty(_ connection: WebSocketConnection) {
        dirty.append(connection)
        guard !flushScheduled else { return }
        flushScheduled = true
        act(on: flushPolicy.firstWrite(at: eventLoop.now, queuedFrames: framesSinceFlush))
    }

    private func act(on decision: FlushPolicy.Decision) {
        switch decision {
        case .flushNow:
            eventLoop.execute { self.flushDirty() }
        case .holdUntil(let deadline):
            eventLoop.scheduleTask(deadline: deadline) { self.holdEnded() }
        }
    }

    private func holdEnded() {
        switch flushPolicy.holdEnded(at: eventLoop.now, queuedFrames: framesSinceFlush, waitingConnections: dirty.count) {
        case .flushNow: flushDirty()
        case .holdUntil(let deadline): eventLoop.scheduleTask(deadline: deadline) { self.holdEnded() }
        }
    }

    private func flushDirty() {
        let start = eventLoop.now
        flushScheduled = false
        swap(&dirty, &flushing)
        for connection in flushing { connection.flushIfNeeded() }
        flushPolicy.flushed(from: start, to: eventLoop.now, bytesPerConnection: bytesSinceFlush / max(1, flushing.count))
        bytesSinceFlush = 0
        framesSinceFlush = 0
        flushing.removeAll(keepingCapacity: true)
        // Every connection owed a range has written it: the batches are done.
        batches.removeAll(keepingCapacity: true)
        currentSlots = (nil, nil)
    }

    // MARK: Batches

    private struct BatchKey: Hashable {
        var topic: String
        var compressed: Bool
    }

    /// The current batch per topic and frame variant, until the next flush (TickBatch.swift).
    private var batches: [BatchKey: TickBatch] = [:]
    /// Where the message being delivered lies in its batches (plain, compressed), once placed.
    private var currentSlots: (plain: (TickBatch, Range<Int>)?, compressed: (TickBatch, Range<Int>)?) = (nil, nil)
    private static let maxBatchBytes = 256 * 1024
    private let batchAllocator = ByteBufferAllocator()

    /// The batch and range holding `frame`, the variant of the message being delivered that a
    /// connection takes; placed once per message and variant, on the first connection asking.
    func batchSlot(topic: String, frame: ByteBuffer, compressed: Bool) -> (TickBatch, Range<Int>) {
        if let slot = compressed ? currentSlots.compressed : currentSlots.plain { return slot }
        let key = BatchKey(topic: topic, compressed: compressed)
        let batch: TickBatch
        if let open = batches[key], !open.isSliced, open.byteCount + frame.readableBytes <= Self.maxBatchBytes {
            batch = open
        } else {
            batch = TickBatch(allocator: batchAllocator, capacity: max(4_096, frame.readableBytes))
            batches[key] = batch
        }
        let slot = (batch, batch.append(frame))
        if compressed { currentSlots.compressed = slot } else { currentSlots.plain = slot }
        return slot
    }

    // MARK: Keepalive

    /// Starts probing idle connections: each sweep pings those silent for `interval` and closes
    /// those that left a ping unanswered for `timeout`.
    func startKeepalive(interval: TimeAmount, timeout: TimeAmount) {
        let sweepEvery = TimeAmount.nanoseconds(max(min(interval.nanoseconds, timeout.nanoseconds) / 2, 10_000_000))
        keepaliveTask = eventLoop.scheduleRepeatedTask(initialDelay: sweepEvery, delay: sweepEvery) { _ in
            // The loop's clock, not the system's: the same on a real loop, and an embedded loop's
            // advanced time in tests.
            let now = self.eventLoop.now
            for connection in self.connections {
                connection.keepaliveSweep(now: now, interval: interval, timeout: timeout)
            }
        }
    }

    func stopKeepalive() {
        keepaliveTask?.cancel()
        keepaliveTask = nil
    }

    // MARK: Lame duck

    /// Closes this loop's connections with 1001 one after another, on the loop's clock: they
    /// are the clients `first`, `first + 1`, … of `total` across every loop, and the i-th of the
    /// total gets its close frame at i·window/total (`LameDuck.delay`). The broker's clients then
    /// do not all reconnect to the other brokers in the same second (nats-server's lame-duck
    /// mode). Connections that close meanwhile are passed over.
    func closeSpread(over window: TimeAmount, first: Int = 0, of total: Int? = nil) {
        eventLoop.assertInEventLoop()
        let closing = connections
        let total = max(total ?? closing.count, first + closing.count)
        for (index, connection) in closing.enumerated() {
            let delay = LameDuck.delay(ofClient: first + index, of: total, over: window)
            if delay <= .zero {
                connection.close(.shutdown)
            } else {
                let bound = NIOLoopBound(connection, eventLoop: eventLoop)
                lameDuckCloses.append(eventLoop.scheduleTask(in: delay) { bound.value.close(.shutdown) })
            }
        }
    }

    /// Drops every connection still open (the end of a shutdown's grace period).
    func closeRemainingNow() {
        eventLoop.assertInEventLoop()
        for task in lameDuckCloses { task.cancel() }
        lameDuckCloses.removeAll()
        for connection in connections { connection.closeNow() }
    }
}

/// When each client gets its close frame during a lame-duck shutdown.
enum LameDuck {
    /// The delay of the client at `index` of `count`, spread evenly over `window`: index·window/count.
    static func delay(ofClient index: Int, of count: Int, over window: TimeAmount) -> TimeAmount {
        guard count > 0, index > 0, window > .zero else { return .zero }
        return .nanoseconds(Int64(Double(window.nanoseconds) * Double(index) / Double(count)))
    }
}
