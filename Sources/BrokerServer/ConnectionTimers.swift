import NIOCore

/// A connection's timers, kept out of line (WebSocketConnection.timers): an idle connection arms
/// none of them, and 19,900 idle connections are what one broker holds here.
final class ConnectionTimers {
    /// The token's `exp`.
    var expiry: Scheduled<Void>?
    /// The close handshake's deadline.
    var close: Scheduled<Void>?
    /// How long the connection may stay behind.
    var slowConsumer: Scheduled<Void>?
}
