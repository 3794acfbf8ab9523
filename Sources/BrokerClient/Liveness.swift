/// Whether the broker is still there, decided once per keep-alive interval.
///
/// Any frame from the broker proves it alive. Only after an interval in which nothing arrived is
/// a `ping` request sent, and only after a further silent interval is the connection given up.
/// A WebSocket-level ping would not do: the broker's pong queues behind what the connection is
/// already owed, so a client reading a long replay over a slow link would drop a connection
/// that is busy delivering (WSClient's auto-ping does exactly that).
struct Liveness {
    enum Action: Equatable {
        /// Something arrived in the interval: nothing to do.
        case none
        /// Silent for one interval: ask the broker for a reply.
        case sendPing
        /// Silent for one interval after the ping: the connection is dead.
        case giveUp
    }

    private var heardSinceTick = true
    private var pingOutstanding = false

    /// A frame arrived from the broker.
    mutating func heard() {
        heardSinceTick = true
    }

    /// One keep-alive interval has passed.
    mutating func tick() -> Action {
        if heardSinceTick {
            heardSinceTick = false
            pingOutstanding = false
            return .none
        }
        if pingOutstanding { return .giveUp }
        pingOutstanding = true
        return .sendPing
    }
}
