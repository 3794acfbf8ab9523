import NIOWebSocket

/// Why the broker ends a connection: the close code it sends, the reason text, and what the
/// metrics count it as (decided here, not read back from the text).
struct CloseCause: Equatable, Sendable {
    var code: WebSocketErrorCode
    var reason: String
    var disconnect: DisconnectReason

    static let slowConsumer = CloseCause(code: .policyViolation, reason: "slow consumer", disconnect: .slowConsumer)
    static let pingTimeout = CloseCause(code: .goingAway, reason: "ping timeout", disconnect: .pingTimeout)
    static let shutdown = CloseCause(code: .goingAway, reason: "going away", disconnect: .shutdown)
    static let tokenExpired = CloseCause(code: .policyViolation, reason: "token expired", disconnect: .tokenExpired)
    static let operatorRequest = CloseCause(
        code: .policyViolation, reason: "disconnected by operator", disconnect: .operatorRequest)

    /// The peer broke RFC 6455 or a limit: 1002, 1007 and 1009 count as protocol errors.
    static func violation(_ code: WebSocketErrorCode, _ reason: String) -> CloseCause {
        switch code {
        case .protocolError, .dataInconsistentWithMessage, .messageTooLarge:
            return CloseCause(code: code, reason: reason, disconnect: .protocolError)
        default:
            return CloseCause(code: code, reason: reason, disconnect: .other)
        }
    }

    var codeNumber: UInt16 { UInt16(webSocketErrorCode: code) }
}

/// The life of one WebSocket connection as a value: the phase it is in, and what the connection
/// must do on each event. `WebSocketConnection` feeds it channel events and performs the actions
/// it returns; the rules are tested alone (ConnectionLifecycleTests), with no channel.
///
/// ```
/// open ──subscribe with replay──▶ replaying ──last page, socket behind──▶ draining
///   ▲                                 │                                      │
///   └───────── hand-over (socket writable) ◀─────────────────────────────────┘
/// open, replaying, draining ──broker closes──▶ closing ──peer's close / timeout / TCP end──▶ closed
/// open, replaying, draining ──peer closes (echoed), TCP ends──▶ closed
/// ```
struct ConnectionLifecycle {
    enum Phase: Equatable {
        /// Serving requests and live messages.
        case open
        /// A subscription's retained messages are being written: live messages for the
        /// connection are held back and later requests wait, until the hand-over.
        case replaying
        /// Every replayed message is written; the hand-over waits for the socket to drain.
        case draining
        /// The broker's close frame is queued; only the peer's close frame still matters.
        case closing
        case closed
    }

    /// Indirect: the payloads (a replay job, a close cause) live in a box, so that the state of
    /// every open connection takes a pointer, not the 64 bytes of a `ReplayJob`.
    private indirect enum State {
        case open
        /// `awaitingWritability`: the next page waits for the socket to drain.
        case replaying(ReplayJob, awaitingWritability: Bool)
        case draining(ReplayJob)
        case closing(CloseCause)
        /// Why it ended; nil while the TCP connection is still up after an echoed close.
        case closed(DisconnectReason?)
    }

    private var state = State.open

    /// The close frame that started the close handshake, for the "connection closed" log line:
    /// who sent it, its code (nil when the peer's frame had none) and reason. nil when the TCP
    /// connection ended without one.
    struct FirstClose: Equatable {
        enum Sender: String { case broker, client }
        var sender: Sender
        var code: UInt16?
        var reason: String
    }

    private(set) var firstClose: FirstClose?

    var phase: Phase {
        switch state {
        case .open: .open
        case .replaying: .replaying
        case .draining: .draining
        case .closing: .closing
        case .closed: .closed
        }
    }

    /// Requests are served, or deferred behind a replay (not closing, not closed).
    var isOpen: Bool {
        switch state {
        case .open, .replaying, .draining: true
        case .closing, .closed: false
        }
    }

    /// The replay in progress (replaying or draining).
    var replay: ReplayJob? {
        switch state {
        case .replaying(let job, _), .draining(let job): job
        default: nil
        }
    }

    /// What the metrics count the end as, once known.
    var disconnectReason: DisconnectReason? {
        switch state {
        case .closing(let cause): cause.disconnect
        case .closed(let reason): reason
        default: nil
        }
    }

    // MARK: Replay

    /// A subscription starts replaying; false (and nothing changes) unless the connection is
    /// open and not already replaying.
    mutating func startReplay(_ job: ReplayJob) -> Bool {
        guard case .open = state else { return false }
        state = .replaying(job, awaitingWritability: false)
        return true
    }

    /// Updates the running replay's bookkeeping (snapshot, cursor, recovered).
    mutating func updateReplay(_ update: (inout ReplayJob) -> Void) {
        guard case .replaying(var job, let awaiting) = state else { return }
        update(&job)
        state = .replaying(job, awaitingWritability: awaiting)
    }

    enum PageStep: Equatable {
        case readNextPage
        /// Flush and wait: `writable()` says when to go on.
        case awaitWritability
        /// The replay is over: `handOver` next.
        case finish
    }

    /// A page is written; `writable` is the channel's writability now.
    mutating func pageWritten(isLast: Bool, writable: Bool) -> PageStep {
        guard case .replaying(let job, _) = state else { return .finish }
        if isLast { return .finish }
        if writable { return .readNextPage }
        state = .replaying(job, awaitingWritability: true)
        return .awaitWritability
    }

    enum HandOverStep {
        /// Release the held-back messages and the deferred requests (the state is open again).
        case handOver(ReplayJob)
        /// Flush and wait: `writable()` says when to go on.
        case awaitWritability
        case nothing
    }

    /// The replay wants to hand over to live delivery; it waits while the socket is behind so
    /// that the held-back messages do not pile onto a full queue.
    mutating func handOver(writable: Bool) -> HandOverStep {
        let job: ReplayJob
        switch state {
        case .replaying(let running, _), .draining(let running): job = running
        default: return .nothing
        }
        guard writable else {
            state = .draining(job)
            return .awaitWritability
        }
        state = .open
        return .handOver(job)
    }

    enum Resumption: Equatable {
        case readNextPage
        case handOver
    }

    /// The channel is writable again: what was waiting for it, if anything (once).
    mutating func writable() -> Resumption? {
        switch state {
        case .replaying(let job, awaitingWritability: true):
            state = .replaying(job, awaitingWritability: false)
            return .readNextPage
        case .draining:
            return .handOver
        default:
            return nil
        }
    }

    // MARK: Closing

    /// The broker closes: true when the close frame must be sent (the first time, while open).
    /// A replay in progress ends here.
    mutating func close(_ cause: CloseCause) -> Bool {
        guard isOpen else { return false }
        state = .closing(cause)
        firstClose = FirstClose(sender: .broker, code: cause.codeNumber, reason: cause.reason)
        return true
    }

    enum PeerCloseAction: Equatable {
        /// Echo the peer's code (RFC 6455 §5.5.1), then drop the TCP connection.
        case echo
        /// The close handshake is complete: drop the TCP connection.
        case dropConnection
        case ignore
    }

    /// The peer's close frame arrived, with its code and reason when it had them.
    mutating func peerClosed(code: UInt16? = nil, reason: String = "") -> PeerCloseAction {
        switch state {
        case .open, .replaying, .draining:
            state = .closed(.clientClose)
            firstClose = FirstClose(sender: .client, code: code, reason: reason)
            return .echo
        case .closing(let cause):
            state = .closed(cause.disconnect)
            return .dropConnection
        case .closed:
            return .ignore
        }
    }

    /// The TCP connection ended (or the handler left the pipeline): the reason to count.
    mutating func ended() -> DisconnectReason {
        let reason: DisconnectReason
        switch state {
        case .open, .replaying, .draining: reason = .reset
        case .closing(let cause): reason = cause.disconnect
        case .closed(let known): reason = known ?? .reset
        }
        state = .closed(reason)
        return reason
    }
}
