import BrokerProtocol
import NIOSSL

extension BrokerClient {
    /// Settings of a `BrokerClient`. Every field has a default suited to a service on a LAN.
    public struct Configuration: Sendable {
        /// How long a request (subscribe, unsubscribe, publish, ping) may take, including the wait
        /// for a connection while the client is reconnecting, and how long `connect()` waits for
        /// the broker's welcome.
        public var requestTimeout: Duration = .seconds(10)
        /// The reconnect schedule after a connection drops (0.1 s doubling to 10 s, with jitter).
        public var backoff: Backoff = Backoff()
        /// Offer permessage-deflate (RFC 7692) on the upgrade; the broker decides whether to use it.
        public var compression: Bool = true
        /// Largest message accepted from the broker, after decompression, and largest frame.
        /// Must be at least the broker's `maxMessageBytes` (default 1 MiB).
        public var maxMessageBytes: Int = 16 << 20
        /// Messages a subscription buffers for a consumer that is slower than the broker.
        /// When the buffer is full, newly arriving messages for that subscription are dropped
        /// (the oldest buffered ones are kept, so order is preserved), counted in
        /// `BrokerSubscription.droppedCount` and reported as `Event.dropped`.
        public var subscriptionBufferSize: Int = 10_000
        /// How often the connection's liveness is checked (nil: never). After an interval in
        /// which nothing arrived from the broker a `ping` request is sent; if nothing arrives in
        /// the next interval either, the connection is closed and reconnects. Any frame counts,
        /// so a long replay over a slow link keeps the connection even while the answer to a
        /// ping waits behind it.
        public var keepAlive: Duration? = .seconds(30)
        /// Bearer token sent as `Authorization: Bearer <token>` on the upgrade request.
        public var token: String?
        /// Where tokens come from when they expire (a JWT from your backend): asked on every
        /// connect and reconnect (overriding `token`), and `tokenRefreshMargin` before the
        /// current token's `exp` (from `welcome`), whose answer is sent as `refresh` on the open
        /// connection. An error or a refused refresh is logged; the connection then ends at `exp`
        /// and the reconnect asks again.
        public var tokenProvider: (@Sendable () async throws -> String)?
        /// How long before `exp` the token provider is asked for a fresh token.
        public var tokenRefreshMargin: Duration = .seconds(30)
        /// PEM file of the certificates to trust for wss:// instead of the system's (a private CA
        /// or a self-signed broker certificate). Nil uses the system's trust store.
        public var trustedCertificatesFile: String?
        /// PEM file of the client certificate (chain) presented on wss:// to a broker or proxy that
        /// asks for one (mutual TLS), with `clientPrivateKeyFile`. Nil presents none.
        public var clientCertificateFile: String?
        /// PEM file of the private key of `clientCertificateFile`.
        public var clientPrivateKeyFile: String?
        /// Whether the broker's certificate is verified on wss:// (default true). false accepts any
        /// certificate and host name, so anyone in the path can read and change the traffic: for a
        /// first look at a test broker, never for production.
        public var verifiesBrokerCertificate: Bool = true
        /// Called (on a client task; keep it short) for connection and subscription events.
        public var onEvent: (@Sendable (Event) -> Void)?

        public init() {}
    }

    /// Something that happened to the connection or a subscription, for logging and for
    /// applications that must know about holes in their view of a topic.
    public enum Event: Sendable {
        /// A connection was established and the broker's welcome received.
        case connected(Welcome)
        /// The connection dropped (`reason` for people); the client will reconnect.
        case disconnected(reason: String)
        /// The client waits `delay` before reconnect attempt `attempt` (1-based).
        case reconnecting(attempt: Int, delay: Duration)
        /// A subscription could not be resumed without loss: the broker answered its resume with
        /// `recovered: false` (messages were pruned, or the journal epoch changed). Messages that
        /// follow are correct, but some in between are missing.
        case gap(filter: String, since: UInt64?)
        /// A subscription's buffer was full and `count` messages (in total so far) were dropped.
        case dropped(filter: String, count: Int)
        /// A subscription was ended by the broker's refusal to resubscribe it after a reconnect.
        case subscriptionFailed(filter: String, error: BrokerClientError)
    }
}

extension BrokerClient.Configuration {
    /// The TLS settings these fields ask for, or nil when they are all defaults (then the system's
    /// trust store verifies the broker). Files are read when the connection is made.
    package var tlsConfiguration: TLSConfiguration? {
        guard trustedCertificatesFile != nil || clientCertificateFile != nil || !verifiesBrokerCertificate else {
            return nil
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let trustedCertificatesFile { tls.trustRoots = .file(trustedCertificatesFile) }
        if let clientCertificateFile {
            tls.certificateChain = [.file(clientCertificateFile)]
            if let clientPrivateKeyFile { tls.privateKey = .file(clientPrivateKeyFile) }
        }
        if !verifiesBrokerCertificate { tls.certificateVerification = .none }
        return tls
    }
}
