import NIOCore

/// Everything the server engine can be told, with the defaults documented in docs/.
public struct BrokerConfiguration: Sendable {
    /// Address to listen on.
    public var host = "127.0.0.1"
    /// Port to listen on; 0 picks a free one (see `BrokerServer.port`).
    public var port = 8080
    /// Path of the WebSocket endpoint.
    public var webSocketPath = "/ws"
    /// Opt-in echo endpoint (a conformance aid for Autobahn|Testsuite); nil disables it.
    public var echoPath: String? = nil
    /// Largest message (after reassembly of fragments) a client may send; announced in welcome.
    public var maxMessageBytes = 1 << 20
    /// Largest single frame a client may send.
    public var maxFrameBytes = 1 << 20
    /// Longest topic name or filter in bytes.
    public var maxTopicBytes = 256
    /// Subscriptions one connection may hold.
    public var maxSubscriptionsPerConnection = 1_000
    /// Bytes a connection may have queued for sending before it is closed as a slow consumer.
    public var maxOutboundBytes = 1 << 20
    /// How long a silent connection waits before the broker pings it.
    public var pingInterval: TimeAmount = .seconds(30)
    /// How long a ping may stay unanswered before the connection is closed.
    public var pongTimeout: TimeAmount = .seconds(10)
    /// How long the broker waits for the peer's close frame after sending its own.
    public var closeTimeout: TimeAmount = .seconds(5)
    /// How long a graceful shutdown waits for clients to close before dropping them.
    public var shutdownGracePeriod: TimeAmount = .seconds(10)
    /// Event loop threads; defaults to one per core.
    public var eventLoopThreads = System.coreCount
    /// Retained messages read from the journal per replay page.
    public var replayPageSize = 512
    /// Accept permessage-deflate (RFC 7692) from clients that offer it. A publish is compressed
    /// once and the compressed frame shared by every subscriber that negotiated it.
    public var compressionEnabled = true
    /// zlib level for outbound messages, 1 (fastest) to 9 (smallest).
    public var compressionLevel = 6
    /// Messages whose frame body is shorter than this go uncompressed (deflate gains little on
    /// them and costs a few microseconds each).
    public var compressionThresholdBytes = 128
    /// Name and version announced in welcome.
    public var serverName = "swift-broker/0.1.0"

    public init() {}
}
