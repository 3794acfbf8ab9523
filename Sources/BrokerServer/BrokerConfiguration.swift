import BrokerProtocol
import NIOCore

/// Everything the server engine can be told, with the defaults documented in docs/.
public struct BrokerConfiguration: Sendable {
    /// Address to listen on.
    public var host = "127.0.0.1"
    /// Port to listen on; 0 picks a free one (see `BrokerServer.port`).
    public var port = 8080
    /// Path of the WebSocket endpoint.
    public var webSocketPath = "/ws"
    /// The admin listener's address and port: when set, the operator routes (`/api/stats`,
    /// `/api/connections`, `/api/topics`, `/metrics`) and `/dashboard` are served there only (404
    /// on the public listener), beside everything else. Nil: no admin listener; 0 picks a free port
    /// (see `BrokerServer.adminPort`).
    public var adminHost = "127.0.0.1"
    public var adminPort: Int? = nil
    /// How often the broker publishes its figures to `$sys/broker/stats`; zero: never.
    public var sysStatsInterval: TimeAmount = .seconds(1)
    /// Opt-in echo endpoint (a conformance aid for Autobahn|Testsuite); nil disables it.
    public var echoPath: String? = nil
    /// Largest message (after reassembly of fragments) a client may send; announced in welcome.
    public var maxMessageBytes = 1 << 20
    /// Largest single frame a client may send.
    public var maxFrameBytes = 1 << 20
    /// Longest topic name or filter in bytes.
    public var maxTopicBytes = 256
    /// Most levels of a topic name or filter (`a/b/c` has three): deeper ones are refused with
    /// `invalid_topic`, which bounds what one filter costs in the trie and the journal's queries.
    public var maxTopicLevels = 32
    /// Publishes per second one connection may make, with a burst of as many; over it a publish
    /// is refused with `rate_limited` and dropped. 0 turns the limit off.
    public var publishRate = 0
    /// WebSocket connections the broker holds at once; an upgrade past it answers 503. 0: no
    /// limit (the `broker` executable derives one from the open-file limit).
    public var maxConnections = 0
    /// WebSocket connections from one IP address at once; an upgrade past it answers 503. 0: no
    /// limit.
    public var maxConnectionsPerIP = 1_000
    /// Retained publishes of one connection waiting for the journal: at this many the broker
    /// stops reading from the connection until the journal has committed some (backpressure).
    public var maxPendingRetained = 1_024
    /// Bytes of retained publishes of all connections waiting for the journal (payload and topic
    /// plus 128 each): past this, every connection that has one waiting stops being read until
    /// the journal catches up.
    public var maxPendingRetainedBytes = 64 << 20
    /// Subscriptions one connection may hold.
    public var maxSubscriptionsPerConnection = 1_000
    /// Bytes queued for sending above which a connection is behind: a connection that stays
    /// behind for `slowConsumerTimeout` is closed as a slow consumer. A short stall (a client's
    /// GC pause, a burst of large messages) is absorbed instead of costing the connection.
    public var outboundHighWaterBytes = 1 << 20
    /// How long a connection may stay behind before it is closed as a slow consumer.
    public var slowConsumerTimeout: TimeAmount = .seconds(10)
    /// Bytes a connection may have queued for sending at all: past this it is closed as a slow
    /// consumer at once. Bounds the memory one connection can hold, whatever the timeout.
    public var maxOutboundBytes = 16 << 20
    /// The longest a busy event loop holds frames already written before flushing them, so that
    /// each write syscall carries more of them; it holds only while frames keep arriving
    /// (FlushPolicy.swift). An idle loop flushes at the end of every tick whatever this is; zero
    /// flushes every tick always.
    public var maxFlushDelay: TimeAmount = .milliseconds(20)
    /// How long a silent connection waits before the broker pings it.
    public var pingInterval: TimeAmount = .seconds(30)
    /// How long a ping may stay unanswered before the connection is closed.
    public var pongTimeout: TimeAmount = .seconds(10)
    /// How long the broker waits for the peer's close frame after sending its own.
    public var closeTimeout: TimeAmount = .seconds(5)
    /// How long a graceful shutdown waits for clients to close before dropping them, after the
    /// last of them was sent its close frame (the lame-duck window).
    public var shutdownGracePeriod: TimeAmount = .seconds(10)
    /// Lame duck: on shutdown the listener stops accepting at once, and the clients get their
    /// close frame (1001) one after another, evenly over this window (the i-th of n at
    /// i·window/n), so that they do not all reconnect to the other brokers in the same second.
    /// Zero: every client at once.
    public var lameDuckDuration: TimeAmount = .seconds(10)
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
    public var serverName = BrokerVersion.serverName

    /// API key for the HTTP API (`/api/*`, `/metrics`): `Authorization: Bearer KEY` or
    /// `X-API-Key: KEY`. Nil leaves the API open.
    public var apiKey: String? = nil
    /// Static tokens accepted on WebSocket upgrades (`Authorization: Bearer TOKEN` or
    /// `?token=TOKEN`), with full permissions; the API key is accepted too.
    public var clientTokens: [String] = []
    /// HS256 secret for JWTs (docs/security.md).
    public var jwtSecret: String? = nil
    /// PEM public key file for RS256 (RSA) or ES256 (P-256) JWTs; ignored when `jwtSecret` is set.
    public var jwtPublicKeyPath: String? = nil
    /// When set, a JWT's `aud` must contain it.
    public var jwtAudience: String? = nil
    /// When set, a JWT's `iss` must equal it.
    public var jwtIssuer: String? = nil
    /// Serve an open broker (no credentials) on a non-loopback address on purpose. Without it such
    /// a configuration refuses to start. With credentials configured it changes nothing: clients
    /// without credentials get the anonymous lists, or are refused when both are empty.
    public var allowAnonymous = false
    /// Filters a client without credentials may subscribe to (covered) and publish to (matched).
    public var anonymousSubscribe: [String] = []
    public var anonymousPublish: [String] = []
    /// Origins (`scheme://host[:port]`, or `*`) allowed to upgrade and to use the HTTP API from a
    /// browser (CORS); empty: only the same origin.
    public var allowedOrigins: [String] = []
    /// Host names (`name` or `name:port`, or `*`) accepted in the `Host` header when listening on
    /// loopback, besides the loopback names and the hosts of `allowedOrigins` (DNS rebinding guard).
    public var allowedHosts: [String] = []
    /// Proxies whose `X-Forwarded-For`/`Forwarded` headers name the client (addresses or CIDR
    /// blocks). Empty: the headers are never believed, the TCP peer is the client.
    public var trustedProxies: [AddressBlock] = []
    /// Log one line per HTTP request (method, path without query, status, client, duration).
    public var accessLog = false

    /// Whether any credential is configured: a JWT key, client tokens or the API key. Without one
    /// the broker is open and listens on loopback only unless `allowAnonymous`.
    public var hasCredentials: Bool {
        (jwtSecret.map { !$0.isEmpty } ?? false) || jwtPublicKeyPath != nil || !clientTokens.filter({ !$0.isEmpty }).isEmpty
            || (apiKey.map { !$0.isEmpty } ?? false)
    }

    /// Whether `host` is a loopback address or name (127.0.0.0/8, ::1, localhost).
    public static func isLoopback(_ host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("[") && name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if name == "localhost" || name.hasSuffix(".localhost") || name == "::1" || name == "0:0:0:0:0:0:0:1" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    /// Why this configuration must not serve, if it must not: an open broker (no credentials) on
    /// a non-loopback address without `allowAnonymous` (PROTOCOL.md "Who may connect").
    public var openOnPublicAddressProblem: String? {
        guard !hasCredentials, !allowAnonymous, !Self.isLoopback(host) else { return nil }
        return "no credentials are configured (auth.jwt-secret, auth.jwt-public-key, auth.client-tokens, auth.api-key) "
            + "and host \(host) is not a loopback address: anyone who reaches it could read and write every topic. "
            + "Configure credentials, listen on 127.0.0.1, or set auth.allow-anonymous: true to serve it open on purpose."
    }
    /// Why the admin listener must not serve, if it must not: on a non-loopback address with
    /// neither an API key nor a JWT key (the operator routes would be open to whoever reaches it).
    public var adminOpenOnPublicAddressProblem: String? {
        guard adminPort != nil, !Self.isLoopback(adminHost) else { return nil }
        let hasAPIKey = apiKey.map { !$0.isEmpty } ?? false
        let hasJWTKey = (jwtSecret.map { !$0.isEmpty } ?? false) || jwtPublicKeyPath != nil
        guard !hasAPIKey, !hasJWTKey else { return nil }
        return "admin.host \(adminHost) is not a loopback address and neither auth.api-key nor a JWT key "
            + "(auth.jwt-secret, auth.jwt-public-key) is configured: anyone who reaches it could list and disconnect "
            + "clients. Configure one of them, or keep the admin listener on 127.0.0.1."
    }

    /// Largest body of a batch publish (`POST /api/publish` with a JSON array).
    public var maxBatchBytes = 8 << 20
    /// Most messages in one batch publish.
    public var maxBatchMessages = 1_000
    /// A plain HTTP connection is closed when a request takes longer than this to arrive, or
    /// when it stays idle this long between requests (slowloris guard).
    public var httpIdleTimeout: TimeAmount = .seconds(30)
    /// Bytes of HTTP request bodies held at once, over every connection (declared lengths count
    /// from the request head); a request that would pass it answers 503 before its body is read.
    public var maxHTTPBodyBytesInFlight = 64 << 20
    /// TLS: PEM certificate chain and private key; nil serves plain ws:// and http://.
    public var tls: TLSFiles? = nil

    /// Certificate and key files for TLS (wss://, https://).
    public struct TLSFiles: Sendable, Equatable {
        public var certificateChainPath: String
        public var privateKeyPath: String
        public init(certificateChainPath: String, privateKeyPath: String) {
            self.certificateChainPath = certificateChainPath
            self.privateKeyPath = privateKeyPath
        }
    }

    public init() {}

    /// This configuration with what a reload may change taken from `new` (SIGHUP,
    /// docs/operations.md "Reloading"): credentials, origins and proxies, per-connection and
    /// per-request limits, the access log and the TLS certificate and key (when TLS is on in
    /// both). Everything else is read once at start (listeners, event loops, compression, the
    /// journal's settings) and stays as it is until a restart.
    public func reloading(from new: BrokerConfiguration) -> BrokerConfiguration {
        var merged = self
        merged.apiKey = new.apiKey
        merged.clientTokens = new.clientTokens
        merged.jwtSecret = new.jwtSecret
        merged.jwtPublicKeyPath = new.jwtPublicKeyPath
        merged.jwtAudience = new.jwtAudience
        merged.jwtIssuer = new.jwtIssuer
        merged.allowAnonymous = new.allowAnonymous
        merged.anonymousSubscribe = new.anonymousSubscribe
        merged.anonymousPublish = new.anonymousPublish
        merged.allowedOrigins = new.allowedOrigins
        merged.allowedHosts = new.allowedHosts
        merged.trustedProxies = new.trustedProxies
        merged.accessLog = new.accessLog
        merged.publishRate = new.publishRate
        merged.maxConnections = new.maxConnections
        merged.maxConnectionsPerIP = new.maxConnectionsPerIP
        merged.maxSubscriptionsPerConnection = new.maxSubscriptionsPerConnection
        merged.httpIdleTimeout = new.httpIdleTimeout
        merged.maxBatchBytes = new.maxBatchBytes
        merged.maxBatchMessages = new.maxBatchMessages
        // TLS on or off is the listener's make-up: only the files of a TLS listener change.
        if tls != nil, new.tls != nil { merged.tls = new.tls }
        return merged
    }

    /// NIO's writability marks: unwritable above the high-water mark (capped by the hard limit),
    /// writable again once half of it has drained.
    var outboundWaterMark: ChannelOptions.Types.WriteBufferWaterMark {
        let high = max(1, min(outboundHighWaterBytes, maxOutboundBytes))
        return .init(low: high / 2, high: high)
    }
}
