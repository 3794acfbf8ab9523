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
    private let renderMetrics: (@Sendable () -> [UInt8])?

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

    /// Binds the listener and starts keepalive probing.
    public func start() async throws {
        let configuration = self.configuration
        let broker = self.broker
        let tlsContext = try configuration.tls.map(Self.makeTLSContext)
        let authenticator = try await Authenticator.make(configuration)
        let hooks = ServerHooks(
            isListening: { [listener] in listener.withLockedValue { $0?.isActive ?? false } },
            renderMetrics: renderMetrics,
            admission: Admission(authenticator: authenticator, configuration: configuration))
        let bootstrap = ServerBootstrap(group: group)
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
            .childChannelOption(.writeBufferWaterMark, value: configuration.outboundWaterMark)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContext))
                    }
                    try Self.configurePipeline(channel, broker: broker, hooks: hooks)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        listener.withLockedValue { $0 = channel }
        for shard in broker.shards {
            shard.eventLoop.execute {
                shard.startKeepalive(interval: configuration.pingInterval, timeout: configuration.pongTimeout)
            }
        }
        broker.logger.info("listening", metadata: [
            "address": "\(channel.localAddress?.description ?? "?")", "path": "\(configuration.webSocketPath)",
            "tls": "\(tlsContext != nil)",
            "eventLoops": "\(broker.shards.count)",
        ])
    }

    static func configurePipeline(_ channel: any Channel, broker: Broker, hooks: ServerHooks) throws {
        let configuration = broker.configuration
        var webSocketPaths: Set<String> = [configuration.webSocketPath]
        if let echo = configuration.echoPath { webSocketPaths.insert(echo) }
        let paths = webSocketPaths
        // Who the upgrade admitted, from `shouldUpgrade` to the new connection (one channel).
        let admitted = NIOLoopBoundBox<Identity?>.makeEmptyBox(valueType: Identity.self, eventLoop: channel.eventLoop)
        let refusal = NIOLoopBound(UpgradeRefusal(), eventLoop: channel.eventLoop)
        let upgrader = NIOWebSocketServerUpgrader(
            maxFrameSize: configuration.maxFrameBytes,
            automaticErrorHandling: false,
            shouldUpgrade: { channel, head in
                let path = Self.path(of: head.uri)
                // Refused: no upgrade; HTTPRequestHandler answers with the status and reason.
                guard paths.contains(path), case .admitted(let identity) = hooks.admission.upgrade(head) else {
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                // Connection limits: a place is taken here and given back when the channel
                // closes, however it ends. Refused, the HTTP handler answers 503.
                let address = channel.remoteAddress?.ipAddress
                if let refused = broker.admission.admit(address) {
                    refusal.value.reason = refused
                    broker.logger.debug("upgrade refused", metadata: [
                        "peer": "\(channel.remoteAddress?.description ?? "?")", "reason": "\(refused)",
                    ])
                    return channel.eventLoop.makeSucceededFuture(nil)
                }
                channel.closeFuture.whenComplete { _ in broker.admission.release(address) }
                admitted.value = identity
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
                    // Behind TLS when there is TLS: frames written here must be encrypted.
                    let tls = try? operations.handler(type: NIOSSLServerHandler.self)
                    try operations.addHandler(HeadWriter(), position: tls.map { .after($0) } ?? .first)
                    let shard = broker.shard(for: channel.eventLoop)
                    let deflate = Self.deflateAgreement(head, configuration: configuration)
                    let identity = admitted.value ?? Identity(kind: .anonymous, permissions: .nothing)
                    try operations.addHandler(WebSocketConnection(
                        broker: broker, shard: shard, mode: mode, deflate: deflate,
                        identity: identity, authenticator: hooks.admission.authenticator))
                }
            }
        )
        try channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withServerUpgrade: (upgraders: [upgrader], completionHandler: { _ in }),
            withErrorHandling: true
        )
        try channel.pipeline.syncOperations.addHandler(
            HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: webSocketPaths, upgradeRefusal: refusal),
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

    /// Stops accepting, closes every client with 1001 and waits (up to the grace period) for
    /// them to go; then stops the event loops if the server created them.
    public func shutdown() async {
        let channel = listener.withLockedValue { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await channel?.close()
        for shard in broker.shards {
            shard.eventLoop.execute {
                shard.stopKeepalive()
                for connection in shard.connections { connection.close(.shutdown) }
            }
        }
        let deadline = NIODeadline.now() + configuration.shutdownGracePeriod
        while NIODeadline.now() < deadline, await openConnections() > 0 {
            try? await Task.sleep(for: .milliseconds(20))
        }
        for shard in broker.shards {
            try? await shard.eventLoop.submit {
                for connection in shard.connections { connection.closeNow() }
            }.get()
        }
        broker.logger.info("listener stopped")
        if ownsGroup { try? await group.shutdownGracefully() }
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
