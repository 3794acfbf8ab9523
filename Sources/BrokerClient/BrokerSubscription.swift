import NIOConcurrencyHelpers

/// The messages of one subscription, in the order the broker delivered them.
///
/// Iterate it with `for try await message in subscription`. The sequence
/// - finishes normally after `unsubscribe()` or `BrokerClient.close()`;
/// - throws if the broker refuses to resubscribe it after a reconnect (`BrokerClientError.server`).
///
/// It survives reconnects: the client resubscribes by itself and, for a subscription that asked
/// for retained messages, resumes from the last offset it delivered (see `ResumeState`).
/// Holes it could not avoid are counted in `gapCount` (the broker said `recovered: false`) and
/// `droppedCount` (the buffer of `Configuration.subscriptionBufferSize` messages was full), and are
/// also reported through `Configuration.onEvent`.
///
/// Only one task may iterate a subscription. Ending the iteration early (break, cancellation)
/// does not unsubscribe; call `unsubscribe()` (or drop every reference, which unsubscribes in the
/// background).
public final class BrokerSubscription: AsyncSequence, Sendable {
    public typealias Element = BrokerMessage
    public typealias Failure = any Error

    /// The filter subscribed to.
    public let filter: String
    let localID: UInt64
    let stream: AsyncThrowingStream<BrokerMessage, any Error>
    let counters: Counters
    let onRelease: @Sendable () -> Void
    private let unsubscribeAction: @Sendable () async throws -> Void

    init(
        filter: String, localID: UInt64, stream: AsyncThrowingStream<BrokerMessage, any Error>, counters: Counters,
        unsubscribe: @escaping @Sendable () async throws -> Void, onRelease: @escaping @Sendable () -> Void
    ) {
        self.filter = filter
        self.localID = localID
        self.stream = stream
        self.counters = counters
        self.unsubscribeAction = unsubscribe
        self.onRelease = onRelease
    }

    deinit { onRelease() }

    /// Times a resume was answered with `recovered: false` (some messages are missing).
    public var gapCount: Int { counters.box.withLockedValue { $0.gaps } }
    /// Messages dropped because the subscription's buffer was full.
    public var droppedCount: Int { counters.box.withLockedValue { $0.dropped } }

    /// Unsubscribes (the broker is told when no other subscription of this client uses the same
    /// filter) and finishes the sequence. Idempotent.
    public func unsubscribe() async throws {
        try await unsubscribeAction()
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), owner: self)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<BrokerMessage, any Error>.AsyncIterator
        /// Keeps the subscription alive while it is iterated (`for try await m in try await
        /// client.subscribe(...)` holds only the iterator).
        let owner: BrokerSubscription

        public mutating func next() async throws -> BrokerMessage? {
            try await base.next()
        }
    }

    /// Counters shared between the subscription and the client's bookkeeping.
    final class Counters: Sendable {
        struct Values {
            var gaps = 0
            var dropped = 0
        }
        let box = NIOLockedValueBox(Values())
    }
}
