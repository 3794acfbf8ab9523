import BrokerJournal
import BrokerProtocol
import NIOCore

/// Who waits for a request the journal writer handled. Always answered on the event loop of the
/// shard the request came from.
enum JournalWaiter: Sendable {
    /// A publish over WebSocket: acknowledged (or refused) on its connection.
    case publish(NIOLoopBound<WebSocketConnection>, RequestID?)
    /// A subscription's replay, waiting for the journal's high-water mark.
    case replaySnapshot(NIOLoopBound<WebSocketConnection>)
    /// A caller without a connection (the HTTP API).
    case promise(EventLoopPromise<UInt64?>)
}

/// "The writer is done with a request": the one event by which that reaches an event loop, in
/// the loop's mailbox behind every delivery the writer staged before it (JournalOutbox.swift).
struct JournalCompletion: Sendable {
    var waiter: JournalWaiter
    /// The offset of a retained publish, the high-water mark of a snapshot, nil for a live
    /// publish sequenced behind the journal; or why the journal failed the request.
    var result: Result<UInt64?, JournalError>
    /// A retained publication travels back with its completion, so that it is released, payload
    /// and all, on the loop that allocated it rather than on the writer.
    var publication: RetainedPublication?

    init(_ waiter: JournalWaiter, _ result: Result<UInt64?, JournalError>, publication: RetainedPublication? = nil) {
        self.waiter = waiter
        self.result = result
        self.publication = publication
    }

    /// Answers the waiter; on its loop.
    func answer() {
        switch waiter {
        case .publish(let connection, let id): connection.value.journalRequestCompleted(result, id: id, retainedBytes: publication?.heldBytes)
        case .replaySnapshot(let connection): connection.value.replaySnapshotTaken(result)
        case .promise(let promise): promise.completeWith(result.mapError { $0 as any Error })
        }
    }
}
