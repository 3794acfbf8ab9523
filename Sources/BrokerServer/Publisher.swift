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
    /// Appends a retained message; the publication fans it out once committed and then answers
    /// its requester on the requester's loop (RetainedPublication.swift).
    func publishRetained(_ publication: RetainedPublication) {
        journal.append(publication)
    }

    /// Fans a live message out behind every journal request made before (through the writer),
    /// then posts `then` to the loop of shard `shardPosition`.
    func publishLiveAfterJournal(_ message: OutboundMessage, thenOnShard shardPosition: Int, _ then: LoopMailbox.Item) {
        journal.snapshot { _ in
            self.fanOutFromWriter(message)
            self.outbox.complete(onShard: shardPosition, then)
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
                publishRetained(RetainedPublication(
                    topic: item.topic, payload: item.payload, isBinary: item.isBinary,
                    requester: .callback { promise.completeWith($0.map(Optional.some).mapError { $0 as any Error }) },
                    shardPosition: shard.position, broker: self, allocator: allocator))
                futures.append(promise.futureResult)
            } else {
                let message = OutboundMessage(
                    topic: item.topic, payload: item.payload, isBinary: item.isBinary, offset: nil,
                    compressor: sharedFrameCompressor(on: shard), allocator: allocator)
                if viaJournal {
                    let promise = eventLoop.makePromise(of: UInt64?.self)
                    publishLiveAfterJournal(message, thenOnShard: shard.position, .run { promise.succeed(nil) })
                    futures.append(promise.futureResult)
                } else {
                    fanOut(message)
                    futures.append(eventLoop.makeSucceededFuture(nil))
                }
            }
        }
        return EventLoopFuture.whenAllSucceed(futures, on: eventLoop)
    }
}
