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
    /// Appends a retained message, fans it out once committed and then calls `completion` on
    /// the journal writer (keep it quick: hop to an event loop).
    func publishRetained(
        topic: String, payload: ByteBuffer, isBinary: Bool, allocator: ByteBufferAllocator,
        completion: @escaping @Sendable (Result<UInt64, JournalError>) -> Void
    ) {
        let levels = topic.split(separator: "/", omittingEmptySubsequences: false)
        let entry = JournalEntry(topic: topic, payload: payload, isBinary: isBinary)
        let metrics = self.metrics
        let started = NIODeadline.now()
        journal.append(entry) { result in
            metrics.journalAppended(after: NIODeadline.now() - started)
            if case .success(let offset) = result {
                self.fanOutFromWriter(OutboundMessage(
                    topic: topic, levels: levels, payload: payload, isBinary: isBinary, offset: offset, allocator: allocator))
            }
            completion(result)
        }
    }

    /// Fans a live message out behind every journal request made before (through the writer),
    /// then calls `completion` on the writer.
    func publishLiveAfterJournal(_ message: OutboundMessage, completion: @escaping @Sendable () -> Void) {
        journal.snapshot { _ in
            self.fanOutFromWriter(message)
            completion()
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
                publishRetained(topic: item.topic, payload: item.payload, isBinary: item.isBinary, allocator: allocator) {
                    promise.completeWith($0.map(Optional.some).mapError { $0 as any Error })
                }
                futures.append(promise.futureResult)
            } else {
                let message = OutboundMessage(
                    topic: item.topic, payload: item.payload, isBinary: item.isBinary, offset: nil, allocator: allocator)
                if viaJournal {
                    let promise = eventLoop.makePromise(of: UInt64?.self)
                    publishLiveAfterJournal(message) { promise.succeed(nil) }
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
