import BrokerProtocol

/// Why a `BrokerClient` call failed.
public enum BrokerClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broker answered the request with an `error` message (`code` is one of PROTOCOL.md's
    /// error codes, e.g. `invalid_topic`, `forbidden`; `message` is meant for people).
    case server(code: String, message: String)
    /// No reply (or no connection to send the request on) within the request timeout.
    case timeout
    /// The first connection attempt failed (`reason` is short, e.g. "connection refused").
    case cannotConnect(url: String, reason: String)
    /// The connection dropped while the request was in flight; whether the broker acted on it is
    /// unknown (a publish may or may not have been delivered). The client is reconnecting.
    case connectionLost
    /// `connect()` has not succeeded yet.
    case notConnected
    /// `close()` was called.
    case closed
    /// A topic name or filter that the broker would refuse; checked before sending.
    case invalidTopic(String, reason: String)
    /// The text to publish is not one valid JSON value.
    case invalidJSON(String)
    /// The payload is larger than the broker's `maxMessageBytes`.
    case tooLarge(size: Int, limit: Int)
    /// The broker said something this client does not understand (or a protocol version it
    /// does not speak).
    case protocolViolation(String)

    /// The broker's error code when this is a `.server` error.
    public var serverCode: ErrorCode? {
        if case .server(let code, _) = self { return ErrorCode(rawValue: code) }
        return nil
    }

    public var description: String {
        switch self {
        case .server(let code, let message): return "\(code): \(message)"
        case .timeout: return "timed out waiting for the broker"
        case .cannotConnect(let url, let reason): return "cannot connect to \(url): \(reason)"
        case .connectionLost: return "connection lost before the broker replied"
        case .notConnected: return "not connected"
        case .closed: return "client closed"
        case .invalidTopic(let topic, let reason): return "invalid topic \(topic): \(reason)"
        case .invalidJSON(let reason): return "invalid JSON: \(reason)"
        case .tooLarge(let size, let limit): return "message of \(size) bytes exceeds the broker's limit of \(limit) bytes"
        case .protocolViolation(let what): return "protocol violation: \(what)"
        }
    }
}
