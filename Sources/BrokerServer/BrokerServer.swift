import BrokerJournal
import CoreMetrics
import BrokerProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import ServiceLifecycle

/// The broker's network side: one listener that upgrades `GET /ws` to WebSocket and serves
/// PROTOCOL.md on SwiftNIO event loops (one per core by default).
///
/// Run it as a swift-service-lifecycle `Service` (SIGTERM drains it), or call `start()` and
/// `shutdown()` yourself (tests). The journal belongs to the caller, who closes it after
/// `shutdown()` so that everything acknowledged is committed.
public final class BrokerServer: Sendable {
    public let configuration: BrokerConfiguration
    let broker: Broker
    private let group: MultiThreadedEventLoopGroup
    private let ownsGroup: Bool
    private let listener = NIOLockedValueBox<(any Channel)?>(nil)
    private let adminListener = NIOLockedValueBox<(any Channel)?>(nil)
    /// The `$sys/broker/stats` timer, while serving.
    private let sysStats = NIOLockedValueBox<RepeatedTask?>(nil)
    private let renderMetrics: (@Sendable () -> [UInt8])?
    /// The listeners' admission checks, once started: a reload replaces what they hold.
    private let listenerHooks = NIOLockedValueBox<[(hooks: ServerHooks, host: String)]>([])
    /// The TLS context new connections get (a reload replaces it with the files' new contents).
    private let tlsContext = NIOLockedValueBox<NIOSSLContext?>(nil)

    /// - Parameters:
    ///   - metrics: where the broker's metrics go (default: nowhere).
    ///   - renderMetrics: the exposition `GET /metrics` answers with (Prometheus text); nil
    ///     answers 404.
    public init(
        configuration: BrokerConfiguration, journal: any Journal, logger: Logger,
        eventLoopGroup: MultiThreadedEventLoopGroup? = nil,
        metrics: BrokerMetrics? = nil,
        renderMetrics: (@Sendable () -> [UInt8])? = nil
    ) {
        self.configuration = configuration
        self.ownsGroup = eventLoopGroup == nil
        self.group = eventLoopGroup ?? MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.eventLoopThreads))
        self.renderMetrics = renderMetrics
        self.broker = Broker(
            configuration: configuration, journal: journal,
            eventLoops: Array(group.makeIterator()), logger: logger,
            metrics: metrics ?? .disabled)
    }

    /// Exports the current figures to the metrics backend (also done on every scrape).
    public func collectMetrics() async {
        try? await broker.metrics.collect(broker, on: group.next()).get()
    }

    /// Checks that the TLS certificate and key load (to fail at startup, before listening).
    public static func checkTLS(_ files: BrokerConfiguration.TLSFiles) throws {
        _ = try makeTLSContext(files)
    }

    /// The TLS 1.2 cipher suites the listener accepts: ECDHE key exchange (forward secrecy) with
    /// an AEAD cipher, for ECDSA and RSA certificates, as Mozilla's "intermediate" profile. No
    /// static-RSA key exchange, no CBC, no SHA-1 MAC. TLS 1.3 has only such suites and is not
    /// configurable in BoringSSL.
    static let tls12CipherSuites: [NIOTLSCipher] = [
        .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        .TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, .TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, .TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]

    /// Loads the TLS certificate and key named in the configuration (TLS 1.2 or later; TLS 1.2
    /// restricted to `tls12CipherSuites`).
    static func makeTLSContext(_ files: BrokerConfiguration.TLSFiles) throws -> NIOSSLContext {
        let chain = try NIOSSLCertificate.fromPEMFile(files.certificateChainPath).map { NIOSSLCertificateSource.certificate($0) }
        let key = try NIOSSLPrivateKey(file: files.privateKeyPath, format: .pem)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        tls.cipherSuiteValues = tls12CipherSuites
        return try NIOSSLContext(configuration: tls)
    }

    /// The port the listener is bound to, once started (useful with port 0).
    public var port: Int? {
        listener.withLockedValue { $0?.localAddress?.port }
    }

    /// The admin listener's port, once started, when there is one (`adminPort`).
    public var adminPort: Int? {
        adminListener.withLockedValue { $0?.localAddress?.port }
    }

    /// Binds the listener (and the admin listener, when configured) and starts keepalive probing
    /// and the `$sys/broker/stats` publisher.
    public func start() async throws {
        let configuration = self.configuration
        let broker = self.broker
        let tlsContext = try configuration.tls.map(Self.makeTLSContext)
        self.tlsContext.withLockedValue { $0 = tlsContext }
        let authenticator = try await Authenticator.make(configuration)
        let isListening: @Sendable () -> Bool = { [listener] in listener.withLockedValue { $0?.isActive ?? false } }
        let hooks = ServerHooks(
            isListening: isListening, renderMetrics: renderMetrics,
            admission: Admission(authenticator: authenticator, configuration: configuration))
        listenerHooks.withLockedValue { $0 = [(hooks, configuration.host)] }
        let hasAdminListener = configuration.adminPort != nil
        let channel = try await bootstrap(hooks: hooks, role: hasAdminListener ? .publicOnly : .combined)
            .bind(host: configuration.host, port: configuration.port).get()
        listener.withLockedValue { $0 = channel }
        if let adminPort = configuration.adminPort {
            // Its own Host rule: a loopback admin listener answers to loopback names only.
            var adminConfiguration = configuration
            adminConfiguration.host = configuration.adminHost
            let adminHooks = ServerHooks(
                isListening: isListening, renderMetrics: renderMetrics,
                admission: Admission(authenticator: authenticator, configuration: adminConfiguration))
            listenerHooks.withLockedValue { $0.append((adminHooks, configuration.adminHost)) }
            do {
                let admin = try await bootstrap(hooks: adminHooks, role: .admin)
                    .bind(host: configuration.adminHost, port: adminPort).get()
                adminListener.withLockedValue { $0 = admin }
                broker.logger.info("admin listener ready", metadata: ["address": "\(admin.localAddress?.description ?? "?")"])
            } catch {
                try? await channel.close()
                throw error
            }
        }
        for shard in broker.shards {
            shard.eventLoop.execute {
                shard.startKeepalive(interval: configuration.pingInterval, timeout: configuration.pongTimeout)
            }
        }
        if configuration.sysStatsInterval > .zero {
            let task = SysStatsPublisher.start(broker, every: configuration.sysStatsInterval)
            sysStats.withLockedValue { $0 = task }
        }
        broker.logger.info("listening", metadata: [
            "address": "\(channel.localAddress?.description ?? "?")", "path": "\(configuration.webSocketPath)",
            "tls": "\(tlsContext != nil)",
            "eventLoops": "\(broker.shards.count)",
        ])
    }

    /// A listener's bootstrap: every connection gets the HTTP and WebSocket pipeline, serving the
    /// routes of `role`.
    private func bootstrap(hooks: ServerHooks, role: ListenerRole) -> ServerBootstrap {
        let broker = self.broker
        let tlsContext = self.tlsContext
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { [logger = broker.logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    // A failed accept (EMFILE at the open file limit) would otherwise spin, silently.
                    try channel.pipeline.syncOperations.addHandler(AcceptFailureBackoff(logger: logger))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            // NIO keeps a connection's last receive buffer for its next read, so an idle
            // connection holds one for good: start it at 512 bytes (an upgrade request, a
            // subscribe) instead of NIO's 2 KiB. It grows after any read that fills it.
            .childChannelOption(.recvAllocator, value: CompactRecvAllocator(minimum: 64, initial: 512, maximum: 65_536))
            .childChannelOption(.writeBufferWaterMark, value: configuration.outboundWaterMark)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context = tlsContext.withLockedValue({ $0 }) {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    }
                    try Self.configurePipeline(channel, broker: broker, hooks: hooks, role: role)
                }
            }
    }

    static func configurePipeline(_ channel: any Channel, broker: Broker, hooks: ServerHooks, role: ListenerRole = .combined) throws {
        // What is in force now (after any reload): the trusted proxies of this connection.
        let configuration = broker.currentConfiguration
        var webSocketPaths: Set<String> = [configuration.webSocketPath]
        if let echo = configuration.echoPath { webSocketPaths.insert(echo) }
        let paths = webSocketPaths
        // Who the upgrade admitted, from `shouldUpgrade` to the new connection (one channel).
        let admitted = NIOLoopBoundBox<Identity?>.makeEmptyBox(valueType: Identity.self, eventLoop: channel.eventLoop)
        let refusal = NIOLoopBound(UpgradeRefusal(), eventLoop: channel.eventLoop)
        // The client a trusted proxy named, when it is not the TCP peer.
        let forwardedClient = NIOLoopBoundBox<String?>(nil, eventLoop: channel.eventLoop)
        let upgrader = WebSocketUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            shouldUpgrade: { channel, head in
                let path = Self.path(of: head.uri)
                // Refused: no upgrade; HTTPRequestHandler answers with the status and reason.
                guard paths.contains(path), case .admitted(let identity) = hooks.admission.upgrade(head) else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                // Connection limits: a place is taken here and given back when the channel
                // closes, however it ends. Refused, the HTTP handler answers 503.
                let address = ClientAddress.resolve(
                    peer: channel.remoteAddress, headers: head.headers, trustedProxies: configuration.trustedProxies)
                if let refused = broker.admission.admit(address) {
                    refusal.value.reason = refused
                    broker.logger.debug("upgrade refused", metadata: [
                        "peer": "\(address ?? channel.remoteAddress?.description ?? "?")", "reason": "\(refused)",
                    ])
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                channel.closeFuture.whenComplete { _ in broker.admission.release(address) }
                admitted.value = identity
                if address != channel.remoteAddress?.ipAddress { forwardedClient.value = address }
                var headers = HTTPHeaders()
                if let agreement = Self.deflateAgreement(head, configuration: configuration) {
                    headers.add(name: "Sec-WebSocket-Extensions", value: agreement.responseHeader)
                }
                return channel.eventLoop.makeSucceededFuture(headers)
            },
            upgradePipelineHandler: { channel, head in
                channel.eventLoop.makeCompletedFuture {
                    let mode: WebSocketConnection.Mode =
                        Self.path(of: head.uri) == configuration.echoPath ? .echo : .broker
                    let operations = channel.pipeline.syncOperations
                    let http = try operations.context(name: HTTPRequestHandler.name)
                    operations.removeHandler(context: http, promise: nil)
                    let shard = broker.shard(for: channel.eventLoop)
                    let deflate = Self.deflateAgreement(head, configuration: configuration)
                    let identity = admitted.value ?? Identity(kind: .anonymous, permissions: .nothing)
                    try operations.addHandler(WebSocketConnection(
                        broker: broker, shard: shard, mode: mode, deflate: deflate,
                        identity: identity, authenticator: hooks.admission.authenticator,
                        forwardedClient: forwardedClient.value))
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true
        )
        try channel.pipeline.syncOperations.addHandler(
            HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: webSocketPaths, role: role, upgradeRefusal: refusal),
            name: HTTPRequestHandler.name)
    }

    /// The permessage-deflate agreement for an upgrade request (the same answer in
    /// `shouldUpgrade` and in the pipeline set-up: it depends on the request alone).
    static func deflateAgreement(_ head: HTTPRequestHead, configuration: BrokerConfiguration) -> PerMessageDeflate.Agreement? {
        guard configuration.compressionEnabled else { return nil }
        return PerMessageDeflate.negotiate(headerLines: head.headers["Sec-WebSocket-Extensions"])
    }

    static func path(of uri: String) -> String {
        uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? uri
    }

    /// Stops accepting (so `/readyz` answers 503), then closes the clients with 1001 spread
    /// over the lame-duck window (`lameDuckDuration`), waits for them to go up to the grace
    /// period after the window, drops those still there, and stops the event loops if the
    /// server created them.
    public func shutdown() async {
        let channel = listener.withLockedValue { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
        let admin = adminListener.withLockedValue { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await admin?.close()
        sysStats.withLockedValue { task in
            task?.cancel()
            task = nil
        }
        // Every client's place in one line across the loops, so that the close frames are spread
        // evenly over the window whatever loop each client is on.
        var counts: [Int] = []
        for shard in broker.shards {
            counts.append((try? await shard.eventLoop.submit { shard.connections.count }.get()) ?? 0)
        }
        let clients = counts.reduce(0, +)
        // One client has nobody to be spread from.
        let window = clients > 1 ? configuration.lameDuckDuration : .zero
        if clients > 0 {
            broker.logger.info("lame duck: closing clients", metadata: [
                "clients": "\(clients)", "window_seconds": "\(Double(window.nanoseconds) / 1e9)",
            ])
        }
        var first = 0
        for (shard, count) in zip(broker.shards, counts) {
            shard.eventLoop.execute { [first] in
                shard.stopKeepalive()
                shard.closeSpread(over: window, first: first, of: clients)
            }
            first += count
        }
        let deadline = NIODeadline.now() + window + configuration.shutdownGracePeriod
        while NIODeadline.now() < deadline, await openConnections() > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for shard in broker.shards {
            try? await shard.eventLoop.submit { shard.closeRemainingNow() }.get()
        }
        broker.logger.info("listener stopped")
        if ownsGroup { try? await group.shutdownGracefully() }
    }

    /// Puts what may change of `new` in force (`BrokerConfiguration.reloading(from:)`): new
    /// credentials and origins for the requests and upgrades from now on, the TLS certificate
    /// for new handshakes, the connection caps at once, the other limits for new connections.
    /// Throws, changing nothing, when the new keys or certificate cannot be loaded.
    /// - Returns: the configuration now in force.
    @discardableResult
    public func reload(_ new: BrokerConfiguration) async throws -> BrokerConfiguration {
        let merged = broker.currentConfiguration.reloading(from: new)
        let authenticator = try await Authenticator.make(merged)
        let tls = try merged.tls.map(Self.makeTLSContext)
        tlsContext.withLockedValue { $0 = tls }
        for (hooks, host) in listenerHooks.withLockedValue({ $0 }) {
            var listenerConfiguration = merged
            listenerConfiguration.host = host
            hooks.replaceAdmission(Admission(authenticator: authenticator, configuration: listenerConfiguration))
        }
        broker.reload(merged)
        return merged
    }

    /// Connections open now and connections closed since start, across all event loops.
    public func connectionCounts() async -> (open: Int, closed: Int) {
        var open = 0
        var closed = 0
        for shard in broker.shards {
            let counts = try? await shard.eventLoop.submit { (shard.connections.count, shard.counters.disconnects.reduce(0, +)) }.get()
            open += counts?.0 ?? 0
            closed += counts?.1 ?? 0
        }
        return (open, closed)
    }

    /// Connections currently open, across all event loops.
    public func openConnections() async -> Int {
        var total = 0
        for shard in broker.shards {
            total += (try? await shard.eventLoop.submit { shard.connections.count }.get()) ?? 0
        }
        return total
    }
}

extension BrokerServer: Service {
    /// Serves until a graceful shutdown (SIGTERM/SIGINT through the ServiceGroup) or
    /// cancellation, then drains.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }
}
