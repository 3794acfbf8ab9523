import BrokerJournal
import BrokerProtocol
import NIOCore

/// The publish path every source shares (WebSocket connections and the HTTP API): a retained
/// message is appended to the journal and fanned out from the writer once committed (so every
/// loop receives retained messages in offset order); a live one is fanned out at once, or
/// sequenced behind its publisher's uncommitted retained ones through the writer.
///
/// Topic validation and size limits happen before (they differ in how an error is answered).
extension Broker {
    /// Appends a retained message; once it is committed the outbox fans it out and then answers
    /// `waiter` on the loop of shard `shardPosition` (JournalOutbox.swift).
    func publishRetained(
        topic: String, payload: ByteBuffer, isBinary: Bool, waiter: JournalWaiter, shardPosition: Int,
        allocator: ByteBufferAllocator
    ) {
        journal.append(RetainedPublication(
            topic: topic, payload: payload, isBinary: isBinary, waiter: waiter, shardPosition: shardPosition,
            outbox: outbox, allocator: allocator))
    }

    /// Fans a live message out behind every journal request made before (a snapshot request
    /// completes in order with appends), then answers `waiter` on the loop of shard `shardPosition`.
    func publishLiveAfterJournal(_ message: OutboundMessage, waiter: JournalWaiter, shardPosition: Int) {
        let outbox = self.outbox
        journal.snapshot { _ in
            outbox.sequenced(message, then: JournalCompletion(waiter, .success(nil)), onShard: shardPosition)
        }
    }

    /// Publishes `items` in order for a caller without a connection (the HTTP API), from an
    /// event loop of the broker's. Succeeds with each item's offset (nil for live messages) once
    /// every retained one is committed; fails with the first journal error.
    func publish(_ items: [PublishItem], on eventLoop: any EventLoop) -> EventLoopFuture<[UInt64?]> {
        eventLoop.assertInEventLoop()
        let shard = self.shard(for: eventLoop)
        let allocator = ByteBufferAllocator()
        var viaJournal = false
        var futures: [EventLoopFuture<UInt64?>] = []
        futures.reserveCapacity(items.count)
        for item in items {
            shard.counters.published(isBinary: item.isBinary, retained: item.retain, bytes: item.payload.readableBytes)
            if item.retain {
                viaJournal = true
                let promise = eventLoop.makePromise(of: UInt64?.self)
                publishRetained(
                    topic: item.topic, payload: item.payload, isBinary: item.isBinary, waiter: .promise(promise),
                    shardPosition: shard.position, allocator: allocator)
                futures.append(promise.futureResult)
            } else {
                broadcastToCluster(topic: item.topic, payload: item.payload, isBinary: item.isBinary)
                let message = OutboundMessage(
                    topic: item.topic, payload: item.payload, isBinary: item.isBinary, offset: nil,
                    compressor: sharedFrameCompressor(on: shard), allocator: allocator)
                if viaJournal {
                    let promise = eventLoop.makePromise(of: UInt64?.self)
                    publishLiveAfterJournal(message, waiter: .promise(promise), shardPosition: shard.position)
                    futures.append(promise.futureResult)
                } else {
                    fanOut(message, from: shard)
                    futures.append(eventLoop.makeSucceededFuture(nil))
                }
            }
        }
        return EventLoopFuture.whenAllSucceed(futures, on: eventLoop)
    }
}
