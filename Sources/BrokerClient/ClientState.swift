import BrokerProtocol
import NIOCore

/// One WebSocket connection as the rest of the client sees it: a queue of frames that a single
/// writer task sends in order (the per-connection deflate context must see frames in the order
/// they go on the wire, so there is exactly one writer).
final class Connection: Sendable {
    enum Outbound: Sendable {
        case text(ByteBuffer)
        case binary(ByteBuffer)
        /// Start the closing handshake; the writer stops after it.
        case close
    }

    let generation: UInt64
    private let queue: AsyncStream<Outbound>.Continuation

    init(generation: UInt64, queue: AsyncStream<Outbound>.Continuation) {
        self.generation = generation
        self.queue = queue
    }

    /// Enqueues a frame; false when the connection's writer is gone.
    @discardableResult
    func send(_ item: Outbound) -> Bool {
        if case .enqueued = queue.yield(item) { return true }
        return false
    }

    func finish() { queue.finish() }
}

/// Who waits for the reply to a request.
enum Waiter: Sendable {
    /// A call waiting for its reply (`ack`, `unsubscribed`, `pong`) or `error`.
    case reply(CheckedContinuation<ServerMessage, any Error>)
    /// A subscribe of subscription `localID`: the caller's first subscribe (with a continuation),
    /// or a resubscribe after a reconnect (without).
    case subscribe(localID: UInt64, CheckedContinuation<ServerMessage, any Error>?)
}

/// A live subscription in the client's bookkeeping.
struct SubscriptionEntry: Sendable {
    var resume: ResumeState
    let continuation: AsyncThrowingStream<BrokerMessage, any Error>.Continuation
    let counters: BrokerSubscription.Counters
    /// Confirmed by the broker at least once, so resubscribed after a reconnect.
    var active = false
    /// The `since` of the last subscribe sent (reported with a gap).
    var sentSince: UInt64?
}

/// Everything mutable in a `BrokerClient`, behind one lock.
struct ClientState: Sendable {
    enum Phase {
        /// `connect()` not called yet, or the first attempt failed.
        case idle
        /// Connecting for the first time.
        case connecting
        case connected(Connection)
        /// Lost the connection; the run loop is reconnecting.
        case reconnecting
        case closed
    }

    var phase: Phase = .idle
    var welcome: Welcome?
    var everConnected = false
    var generation: UInt64 = 0
    var runTask: Task<Void, Never>?
    /// The task of the current connection attempt (cancelled by `close()`).
    var connectTask: Task<Void, Never>?
    /// `connect()` calls waiting for the first welcome.
    var connectWaiters: [CheckedContinuation<Welcome, any Error>] = []
    /// Requests waiting for a connection (while reconnecting), by token.
    var connectionWaiters: [UInt64: CheckedContinuation<Connection, any Error>] = [:]
    var nextToken: UInt64 = 0
    var requests = RequestTable<Waiter>()
    var subscriptions: [UInt64: SubscriptionEntry] = [:]
    var nextSubscriptionID: UInt64 = 0

    var connection: Connection? {
        if case .connected(let connection) = phase { return connection }
        return nil
    }

    var isClosed: Bool {
        if case .closed = phase { return true }
        return false
    }

    mutating func makeToken() -> UInt64 {
        nextToken += 1
        return nextToken
    }
}
