import BrokerProtocol
import NIOHTTP1

/// Why a WebSocket connection ended, for the disconnect metric.
enum DisconnectReason: String, CaseIterable, Sendable {
    /// The client started the close handshake.
    case clientClose = "client_close"
    /// Closed with 1008: the send queue passed its limit.
    case slowConsumer = "slow_consumer"
    /// A ping went unanswered.
    case pingTimeout = "ping_timeout"
    /// The client broke RFC 6455 or the size limits (1002, 1007, 1009).
    case protocolError = "protocol_error"
    /// The broker is shutting down (1001).
    case shutdown = "shutdown"
    /// Closed with 1008: the connection's token expired without a refresh.
    case tokenExpired = "token_expired"
    /// The TCP connection ended without a close handshake.
    case reset = "reset"
    /// Closed with 1008 by an operator (`DELETE /api/connections/{id}`).
    case operatorRequest = "operator"
    /// Any other close started by the broker.
    case other = "other"
}

/// Why a WebSocket upgrade was refused, for `broker_upgrades_refused_total`.
enum UpgradeRefusalReason: String, CaseIterable, Sendable {
    /// Missing, malformed, badly signed or expired credentials (401).
    case unauthorized
    /// A browser page from an origin not allowed (403).
    case origin
    /// A `Host` that is not a loopback name on a loopback listener (421).
    case host
    /// `limits.max-connections` (503).
    case connectionLimit = "connection_limit"
    /// `limits.max-connections-per-ip` (503).
    case perIPLimit = "per_ip_limit"
}

extension UpgradeRefusalReason {
    /// The reason of a refusal by `Admission.upgrade`, from the status it answers with.
    init(refusalStatus status: HTTPResponseStatus) {
        switch status.code {
        case 403: self = .origin
        case 421: self = .host
        default: self = .unauthorized
        }
    }
}

extension ConnectionAdmission.Refusal {
    var metricReason: UpgradeRefusalReason {
        switch self {
        case .total: .connectionLimit
        case .perAddress: .perIPLimit
        }
    }
}

/// Traffic figures of one event loop, kept as plain integers by the code confined to that loop
/// (no atomics, no locks, no allocation on the delivery path). `BrokerMetrics` sums every
/// shard's counters when it exports them (periodically and on each scrape).
struct ShardCounters: Sendable {
    var connects = 0
    var disconnects = [Int](repeating: 0, count: DisconnectReason.allCases.count)
    /// Index: `UpgradeRefusalReason.allCases`.
    var upgradesRefused = [Int](repeating: 0, count: UpgradeRefusalReason.allCases.count)

    /// Index: `kindIndex(isBinary:retained:)`.
    var publishedMessages = [0, 0, 0, 0]
    var publishedBytes = [0, 0, 0, 0]

    var deliveredTextMessages = 0
    var deliveredTextBytes = 0
    var deliveredBinaryMessages = 0
    var deliveredBinaryBytes = 0
    var replayedMessages = 0

    /// Error replies by protocol error code, and WebSocket-level failures as `ws_<close code>`.
    var protocolErrors: [String: Int] = [:]

    /// Frame bytes compressed with permessage-deflate and the compressed frames' bytes (each
    /// shared frame once, not once per subscriber). Kept by each loop's `FrameCompressor` and
    /// copied in when totals are collected.
    var compressionInputBytes = 0
    var compressionOutputBytes = 0

    static func kindIndex(isBinary: Bool, retained: Bool) -> Int { (isBinary ? 1 : 0) + (retained ? 2 : 0) }

    mutating func published(isBinary: Bool, retained: Bool, bytes: Int) {
        let index = Self.kindIndex(isBinary: isBinary, retained: retained)
        publishedMessages[index] &+= 1
        publishedBytes[index] &+= bytes
    }

    mutating func disconnected(_ reason: DisconnectReason) {
        disconnects[DisconnectReason.allCases.firstIndex(of: reason)!] &+= 1
    }

    mutating func upgradeRefused(_ reason: UpgradeRefusalReason) {
        upgradesRefused[UpgradeRefusalReason.allCases.firstIndex(of: reason)!] &+= 1
    }

    mutating func protocolError(_ code: String) {
        protocolErrors[code, default: 0] &+= 1
    }

    /// The larger of each figure (counters only grow: of two totals collected concurrently, the
    /// later one is larger in every field).
    mutating func formMaximum(_ other: ShardCounters) {
        connects = max(connects, other.connects)
        for i in disconnects.indices { disconnects[i] = max(disconnects[i], other.disconnects[i]) }
        for i in upgradesRefused.indices { upgradesRefused[i] = max(upgradesRefused[i], other.upgradesRefused[i]) }
        for i in publishedMessages.indices {
            publishedMessages[i] = max(publishedMessages[i], other.publishedMessages[i])
            publishedBytes[i] = max(publishedBytes[i], other.publishedBytes[i])
        }
        deliveredTextMessages = max(deliveredTextMessages, other.deliveredTextMessages)
        deliveredTextBytes = max(deliveredTextBytes, other.deliveredTextBytes)
        deliveredBinaryMessages = max(deliveredBinaryMessages, other.deliveredBinaryMessages)
        deliveredBinaryBytes = max(deliveredBinaryBytes, other.deliveredBinaryBytes)
        replayedMessages = max(replayedMessages, other.replayedMessages)
        for (code, count) in other.protocolErrors { protocolErrors[code] = max(protocolErrors[code] ?? 0, count) }
        compressionInputBytes = max(compressionInputBytes, other.compressionInputBytes)
        compressionOutputBytes = max(compressionOutputBytes, other.compressionOutputBytes)
    }

    /// Adds another shard's figures (for totals).
    mutating func add(_ other: ShardCounters) {
        connects &+= other.connects
        for i in disconnects.indices { disconnects[i] &+= other.disconnects[i] }
        for i in upgradesRefused.indices { upgradesRefused[i] &+= other.upgradesRefused[i] }
        for i in publishedMessages.indices {
            publishedMessages[i] &+= other.publishedMessages[i]
            publishedBytes[i] &+= other.publishedBytes[i]
        }
        deliveredTextMessages &+= other.deliveredTextMessages
        deliveredTextBytes &+= other.deliveredTextBytes
        deliveredBinaryMessages &+= other.deliveredBinaryMessages
        deliveredBinaryBytes &+= other.deliveredBinaryBytes
        replayedMessages &+= other.replayedMessages
        for (code, count) in other.protocolErrors { protocolErrors[code, default: 0] &+= count }
        compressionInputBytes &+= other.compressionInputBytes
        compressionOutputBytes &+= other.compressionOutputBytes
    }
}

extension ShardCounters {
    /// `count` connections were handed `message` (one call per message per loop).
    mutating func delivered(_ message: OutboundMessage, count: Int) {
        let bytes = message.frame.readableBytes &* count
        // The frame's first byte holds the opcode: 0x2 is binary.
        if message.frame.getInteger(at: message.frame.readerIndex, as: UInt8.self).map({ $0 & 0x0F == 0x2 }) == true {
            deliveredBinaryMessages &+= count
            deliveredBinaryBytes &+= bytes
        } else {
            deliveredTextMessages &+= count
            deliveredTextBytes &+= bytes
        }
    }
}
