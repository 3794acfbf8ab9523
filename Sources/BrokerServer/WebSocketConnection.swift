import BrokerJournal
import BrokerProtocol
import DequeModule
import Foundation
import NIOCore
import NIOWebSocket

/// One client's WebSocket connection, from the upgrade to the close.
///
/// Confined to its channel's event loop. Inbound frames become messages through
/// `MessageAssembler`; requests are served in the extensions in `WebSocketConnection+*.swift`.
/// Outbound frames are complete, pre-encoded buffers written straight to the socket (NIO's frame
/// encoder is not in the pipeline: WebSocketUpgrader.swift) and flushed once per event-loop tick
/// by the shard.
final class WebSocketConnection: ChannelDuplexHandler {
    typealias InboundIn = WebSocketFrame
    /// Nothing is written through this handler (it writes its frames through its own context,
    /// to the socket: no outbound handler sits between, but TLS's when there is TLS); it is
    /// duplex only to hold back the channel's reads while reading is paused (`readPauses`).
    typealias OutboundIn = ByteBuffer

    enum Mode {
        /// PROTOCOL.md pub/sub.
        case broker
        /// Echo every message back (conformance testing).
        case echo
    }


    let broker: Broker
    let shard: FanoutShard
    let mode: Mode
    /// permessage-deflate, when the client offered it and the broker accepted (kept once, by
    /// the assembler, which inflates with it).
    var deflate: PerMessageDeflate.Agreement? { assembler.deflate }
    let sessionID: String
    /// Who the client is and what it may do (Authenticator.swift), decided at the upgrade and
    /// replaced by `refresh`. Checked on every publish and subscribe.
    var identity: Identity {
        get { identityBox.identity }
        set { identityBox = IdentityBox(newValue) }
    }
    /// The identity by reference: every client of an open broker shares one box, where an inline
    /// `Identity` would cost each connection 57 bytes.
    private var identityBox: IdentityBox
    /// Verifies the tokens of `refresh`; nil: refresh is refused.
    let authenticator: Authenticator?
    /// Subscriptions this connection may hold: the limit in force when it connected (a reload
    /// applies to new connections).
    let maxSubscriptions: Int
    /// Armed while the token has an `exp`: sends `token_expired` and closes with 1008 then.
    var expiryTimer: Scheduled<Void>? {
        get { timers?.expiry }
        set { if newValue != nil || timers != nil { armedTimers.expiry = newValue } }
    }
    /// Open, replaying, draining, closing, closed: the rules live in `ConnectionLifecycle`.
    var lifecycle = ConnectionLifecycle()
    var state: ConnectionLifecycle.Phase { lifecycle.phase }
    /// This handler's context, which it writes its frames through, from `handlerAdded` to
    /// `handlerRemoved`. Released there: the context holds the handler, so keeping it would keep
    /// both alive after the channel is gone.
    private(set) var context: ChannelHandlerContext?
    /// Where frames are allocated: the default allocator, which is what every channel of the
    /// broker has (a stored copy of its four closures would cost each connection 32 bytes).
    var allocator: ByteBufferAllocator { Self.frameAllocator }
    private static let frameAllocator = ByteBufferAllocator()
    private var assembler: MessageAssembler
    private var needsFlush = false
    /// The run of the shard's current batch this connection is owed, written at flush. Kept as
    /// two fields, not in an enum with the replies below (24 bytes less): extending the run, once
    /// per delivery, then costs no retain and release of the batch.
    private var pendingBatch: TickBatch?
    private var pendingRange = 0..<0
    /// Control replies (acks, pongs, subscribed...) of this tick, in one buffer written at flush:
    /// a publisher with many requests in flight gets one write for all its acks. At most one of
    /// `pendingBatch` and `pendingReplies` is open at a time; starting one writes the other, so
    /// the connection's frames keep their order.
    private var pendingReplies: ByteBuffer?
    /// Armed by `close`: drops the TCP connection if the peer does not answer the close frame.
    private var closeTimer: Scheduled<Void>? {
        get { timers?.close }
        set { if newValue != nil || timers != nil { armedTimers.close = newValue } }
    }
    /// Armed while the connection is behind (unwritable); closes it as a slow consumer if it
    /// does not catch up in time.
    private var slowConsumerTimer: Scheduled<Void>? {
        get { timers?.slowConsumer }
        set { if newValue != nil || timers != nil { armedTimers.slowConsumer = newValue } }
    }
    /// The three timers above, made when the first is armed: most connections never arm one, and
    /// three inline `Scheduled` values would cost each connection 72 bytes.
    private var timers: ConnectionTimers?
    private var armedTimers: ConnectionTimers {
        if let timers { return timers }
        let made = ConnectionTimers()
        timers = made
        return made
    }
    /// Why the connection is ending, once known (for metrics).
    var disconnectReason: DisconnectReason? { lifecycle.disconnectReason }

    /// What this connection sent and was sent, for `GET /api/connections` (plain integers: the
    /// connection is confined to its loop).
    var traffic = ConnectionTraffic()
    /// The peer as `host:port` (`[::1]:port` for IPv6), or as a trusted proxy named it; spelled
    /// out when asked for (logs, `/api/connections`), not kept as a string per connection.
    var remoteAddress: String {
        forwardedClient ?? peerAddress.map(Self.hostAndPort) ?? "?"
    }
    /// The channel's remote address, taken when the handler is added (NIO forgets it at close,
    /// when the closing log line still names the peer). Shares NIO's storage: no allocation.
    private var peerAddress: SocketAddress?
    /// The client's address as a trusted proxy gave it (`http.trusted-proxies`), if it did.
    private let forwardedClient: String?
    /// Wall-clock time of the upgrade.
    private(set) var connectedAt = Date()

    // Fan-out bookkeeping, owned by the shard.
    var shardSlot = -1
    var lastDeliverySequence: UInt64 = 0

    // Keepalive.
    private var sawInbound = true
    /// Set from the loop's clock (`eventLoop.now`) when the handler is added, then by sweeps.
    private var lastInbound = NIODeadline.uptimeNanoseconds(0)
    private var keepalive = Keepalive.quiet

    private enum Keepalive {
        case quiet
        /// A ping waits behind what the connection was already owed. The peer cannot answer a
        /// ping that has not reached it, so the pong timeout starts only once NIO has written it:
        /// a client reading a long replay behind the ping is slow, not dead.
        case pingQueued(since: NIODeadline)
        case awaitingPong(since: NIODeadline)
    }

    /// Filters this connection subscribes to, byte for byte as the trie holds them.
    var filters = SubscriptionFilters()

    /// Publishes of this connection handed to the journal writer and not yet completed. While
    /// any is outstanding, live publishes are sequenced through the writer too, so that one
    /// connection's messages reach subscribers in the order it sent them.
    var journalRequestsInFlight = 0
    /// Of those, the retained publishes (journal backpressure: `maxPendingRetained`).
    var retainedInJournal = 0
    /// Publishes this connection may still make (`publishRate`); nil when unlimited.
    var publishLimiter: PublishRateLimiter?

    /// Why the broker is not reading from this connection now; reads go on when none is left.
    struct ReadPauses: OptionSet {
        let rawValue: UInt8
        /// A replay holds back `maxDeferredRequests` requests.
        static let replayBacklog = ReadPauses(rawValue: 1 << 0)
        /// The journal has not committed `maxPendingRetained` retained publishes of this
        /// connection, or `maxPendingRetainedBytes` of all connections.
        static let journalBacklog = ReadPauses(rawValue: 1 << 1)
    }
    private(set) var readPauses: ReadPauses = []
    /// A read the channel asked for while paused, passed on when reading resumes.
    private var readWithheld = false

    /// The subscription whose retained messages are being replayed, if any.
    var replay: ReplayJob? { lifecycle.replay }
    /// Requests that arrived during a replay; served in order once it ends, so that replies keep
    /// the order of requests (a `ping` after a `subscribe` is answered after its replay).
    var deferredRequests = Deque<Result<ControlRequest, RequestError>>()
    /// Live messages held back while a replay runs, and their size.
    var heldBack: [OutboundMessage] = []
    var heldBackBytes = 0

    /// The connection's loop: its shard's (the server places a connection on its channel's loop).
    var eventLoop: any EventLoop { shard.eventLoop }
    /// False once the handler is gone.
    var isWritable: Bool { context?.channel.isWritable ?? false }

    init(
        broker: Broker, shard: FanoutShard, mode: Mode, deflate: PerMessageDeflate.Agreement? = nil,
        identity: Identity = .open, authenticator: Authenticator? = nil, forwardedClient: String? = nil
    ) {
        self.forwardedClient = forwardedClient
        self.broker = broker
        self.shard = shard
        self.mode = mode
        self.identityBox = IdentityBox.shared(for: identity, authenticator: authenticator)
        self.authenticator = authenticator
        self.sessionID = broker.nextSessionID()
        let current = broker.currentConfiguration
        self.maxSubscriptions = current.maxSubscriptionsPerConnection
        self.assembler = MessageAssembler(maxMessageBytes: broker.configuration.maxMessageBytes, deflate: deflate)
        // Publishes per second (0: no limit), as in force when it connected.
        if current.publishRate > 0 {
            publishLimiter = PublishRateLimiter(rate: current.publishRate, now: shard.eventLoop.now)
        }
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.lastInbound = context.eventLoop.now
        // A client named by a trusted proxy has no port we know of: its address alone.
        self.peerAddress = context.channel.remoteAddress
        self.connectedAt = Date()
        shard.add(self)
        shard.counters.connects &+= 1
        if deflate != nil { broker.compressingConnections.wrappingIncrement(ordering: .relaxed) }
        broker.logger.info("connection opened", metadata: [
            "session": "\(sessionID)", "peer": "\(remoteAddress)", "deflate": "\(deflate != nil)",
        ])
        if mode == .broker {
            let welcome = Welcome(
                server: broker.configuration.serverName, session: sessionID,
                maxMessageBytes: broker.configuration.maxMessageBytes, epoch: broker.journal.epoch,
                client: identity.client, exp: identity.expiresAt, node: broker.cluster?.nodeName)
            sendControl { ServerMessageEncoder.welcome(welcome, into: &$0) }
            armExpiryTimer()
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        leave()
        context.fireChannelInactive()
    }

    /// Removed from the pipeline (NIO removes every handler when the channel closes): lets go of
    /// the contexts, timers and everything queued, so nothing outlives the channel. A completion
    /// that still reaches the connection afterwards (a journal ack in a loop's mailbox) finds it
    /// closed and writes nothing.
    func handlerRemoved(context: ChannelHandlerContext) {
        leave()
        pendingBatch = nil
        pendingReplies = nil
        needsFlush = false
        self.context = nil
    }

    /// Leaves the shard and ends every subscription and wait; once, whichever of channelInactive
    /// and handlerRemoved comes first.
    private func leave() {
        guard shard.remove(self) else { return }
        let wasOpen = lifecycle.isOpen
        let reason = lifecycle.ended()
        closeTimer?.cancel()
        closeTimer = nil
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        expiryTimer?.cancel()
        expiryTimer = nil
        for filter in filters { shard.unsubscribe(self, from: String(filter.text)) }
        filters.removeAll()
        deferredRequests.removeAll()
        heldBack.removeAll()
        heldBackBytes = 0
        if deflate != nil { broker.compressingConnections.wrappingDecrement(ordering: .relaxed) }
        shard.counters.disconnected(reason)
        // The close frame's code and reason say why (e.g. 1008 "slow consumer", or the client's
        // own 1000/1001); "-" when the TCP connection ended without a close frame.
        let first = lifecycle.firstClose
        broker.logger.info("connection closed", metadata: [
            "session": "\(sessionID)", "peer": "\(remoteAddress)", "clean": "\(!wasOpen)", "reason": "\(reason.rawValue)",
            "close_code": "\(first?.code.map(String.init) ?? "-")", "close_reason": "\(first?.reason ?? "")",
            "closed_by": "\(first?.sender.rawValue ?? "-")",
        ])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        sawInbound = true
        switch lifecycle.phase {
        case .closed:
            return
        case .closing:
            // After our close frame only the peer's close matters.
            if frame.opcode == .connectionClose, lifecycle.peerClosed() == .dropConnection { context.close(promise: nil) }
            return
        case .open, .replaying, .draining:
            break
        }
        switch assembler.receive(frame) {
        case .needMore:
            break
        case .message(let opcode, let payload):
            handleMessage(opcode: opcode, payload: payload)
        case .control(let opcode, let payload):
            handleControl(opcode: opcode, payload: payload)
        case .fail(let code, let reason):
            broker.logger.debug("protocol violation", metadata: ["session": "\(sessionID)", "code": "\(code)", "reason": "\(reason)"])
            close(.violation(WebSocketErrorCode(codeNumber: Int(code)), reason))
        }
    }

    // MARK: Reading

    /// The channel asks for more bytes (after each read when auto-read is on): passed on unless
    /// reading is paused, then kept until it resumes. NIO reads nothing until a read is passed.
    func read(context: ChannelHandlerContext) {
        if readPauses.isEmpty {
            context.read()
        } else {
            readWithheld = true
        }
    }

    /// Stops reading from the socket for `reason` (what was already read is still served).
    func pauseReading(_ reason: ReadPauses) {
        readPauses.insert(reason)
    }

    /// Ends the pause for `reason`; reading goes on if no other pause holds it.
    func resumeReading(_ reason: ReadPauses) {
        guard readPauses.remove(reason) != nil, readPauses.isEmpty, readWithheld else { return }
        readWithheld = false
        context?.read()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            slowConsumerTimer?.cancel()
            slowConsumerTimer = nil
            resumeIfWaiting()
        } else {
            fellBehind()
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError {
            switch error {
            case .invalidFrameLength: close(.violation(.messageTooLarge, "frame too big"))
            default: close(.violation(.protocolError, "protocol error"))
            }
            return
        }
        broker.logger.debug("connection error", metadata: ["session": "\(sessionID)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Frames

    private func handleMessage(opcode: WebSocketOpcode, payload: ByteBuffer) {
        if mode == .echo {
            writeData(ServerFrame.encode(opcode == .text ? .text : .binary, payload: payload, allocator: allocator))
            return
        }
        let parsed: Result<ControlRequest, RequestError> =
            opcode == .text
            ? ControlRequest.parseText(payload, limits: broker.requestLimits)
            : BinaryCodec.decodePublish(payload, limits: broker.requestLimits)
        if lifecycle.phase == .open {
            serve(parsed)
        } else {
            deferRequest(parsed)
        }
    }

    private func handleControl(opcode: WebSocketOpcode, payload: ByteBuffer) {
        switch opcode {
        case .ping:
            write(ServerFrame.encode(.pong, payload: payload, allocator: allocator))
        case .pong:
            keepalive = .quiet
        case .connectionClose:
            if case .fail(let code, let reason) = CloseFrame.validate(payload) {
                close(.violation(WebSocketErrorCode(codeNumber: Int(code)), reason))
                return
            }
            var closeFrame = payload
            let peerCode = closeFrame.readInteger(as: UInt16.self)
            let peerReason = closeFrame.readString(length: closeFrame.readableBytes) ?? ""
            guard lifecycle.peerClosed(code: peerCode, reason: peerReason) == .echo else { return }
            // Echo the peer's code (RFC 6455 §5.5.1) and close once it is written, behind what
            // this connection was already owed (no data frame may follow a close frame).
            heldBack.removeAll()
            heldBackBytes = 0
            deferredRequests.removeAll()
            writePending()
            var echoed = payload
            let code = echoed.readInteger(as: UInt16.self) ?? UInt16(webSocketErrorCode: .normalClosure)
            let frame = ServerFrame.close(code: code, reason: "", allocator: allocator)
            guard let context else { return }
            let channel = context.channel
            context.writeAndFlush(NIOAny(frame)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }

    // MARK: Writing

    /// Queues a complete frame; the shard flushes this connection at the end of the tick.
    func write(_ frame: ByteBuffer) {
        guard let context else { return }
        writePending()
        context.write(NIOAny(frame), promise: nil)
        markNeedsFlush()
    }

    private func markNeedsFlush() {
        if !needsFlush {
            needsFlush = true
            shard.markDirty(self)
        }
    }

    /// Writes a data frame made for this connection alone (a replayed or echoed message):
    /// compressed with the loop's compressor when this connection negotiated compression.
    func writeData(_ plain: ByteBuffer) {
        guard deflate != nil, let compressor = shard.compressor else { return write(plain) }
        write(frame(plain: plain, compressed: compressor.compressed(plain, allocator: allocator)))
    }

    /// The frame of `message` this connection takes: the shared compressed one if it negotiated
    /// compression, otherwise the plain one.
    func frame(of message: OutboundMessage) -> ByteBuffer {
        takesCompressedFrame(of: message) ? message.compressedFrame! : message.frame
    }

    private func takesCompressedFrame(of message: OutboundMessage) -> Bool {
        guard let deflate, message.compressedFrame != nil else { return false }
        return message.frame.readableBytes <= deflate.maxSharedFrameMessageBytes
    }

    private func frame(plain: ByteBuffer, compressed: ByteBuffer?) -> ByteBuffer {
        // A client that asked for a small server window can inflate a frame compressed with the
        // full window only if the message is no longer than its window (no distance can reach
        // further back); the plain frame's length bounds the message's.
        guard let deflate, let compressed, plain.readableBytes <= deflate.maxSharedFrameMessageBytes else { return plain }
        return compressed
    }

    /// Flushes what is pending and goes on with the replay once the channel is writable.
    ///
    /// The flush happens now, whatever the shard's flush policy would say: a connection over its
    /// high-water mark has a full batch already, and nothing else would make room. The lifecycle
    /// records the wait before that flush because NIO reports the channel writable again from
    /// inside the flush when the peer reads fast (the kernel takes everything): a wait recorded
    /// after it would miss the only event that ends it.
    func flushAndAwaitWritability() {
        flushIfNeeded()
        if isWritable { resumeIfWaiting() }
    }

    private func resumeIfWaiting() {
        switch lifecycle.writable() {
        case .readNextPage: readNextReplayPage()
        case .handOver: finishReplay()
        case nil: break
        }
    }

    func flushIfNeeded() {
        guard needsFlush else { return }
        needsFlush = false
        guard let context else { return }
        writePending()
        context.flush()
        if slowConsumerTimer != nil, bufferedBytes > broker.configuration.maxOutboundBytes {
            closeSlowConsumer(because: "queue over max-outbound-bytes")
        }
    }

    /// Writes what the connection has pending: the run of this tick's batch it is owed
    /// (TickBatch.swift) or its replies, ahead of anything else it writes.
    private func writePending() {
        writePendingBatch()
        writePendingReplies()
    }

    private func writePendingBatch() {
        guard let batch = pendingBatch else { return }
        pendingBatch = nil
        context?.write(NIOAny(batch.slice(pendingRange)), promise: nil)
    }

    private func writePendingReplies() {
        guard let replies = pendingReplies else { return }
        pendingReplies = nil
        context?.write(NIOAny(replies), promise: nil)
    }

    /// Queues one JSON reply built by `body`, with the tick's other replies.
    func sendControl(_ body: (inout ByteBuffer) -> Void) {
        guard context != nil else { return }
        writePendingBatch()
        if pendingReplies == nil { pendingReplies = allocator.buffer(capacity: 256) }
        ServerFrame.appendText(to: &pendingReplies!, body)
        markNeedsFlush()
    }

    func sendError(_ error: RequestError) {
        shard.counters.protocolError(error.code.rawValue)
        broker.logger.debug("request refused", metadata: [
            "session": "\(sessionID)", "code": "\(error.code.rawValue)", "message": "\(error.message)",
        ])
        sendControl { ServerMessageEncoder.error(error, into: &$0) }
    }

    /// A message for this connection from the shard.
    func deliver(_ message: OutboundMessage) {
        switch lifecycle.phase {
        case .closing, .closed: return
        case .open, .replaying, .draining: break
        }
        if lifecycle.phase == .open {
            let compressed = takesCompressedFrame(of: message)
            let (batch, range) = shard.batchSlot(
                topic: message.topic, frame: compressed ? message.compressedFrame! : message.frame, compressed: compressed)
            traffic.sent(message.frame.readableBytes)
            if pendingBatch === batch, pendingRange.upperBound == range.lowerBound {
                pendingRange = pendingRange.lowerBound..<range.upperBound
                return
            }
            writePending()
            pendingBatch = batch
            pendingRange = range
            markNeedsFlush()
            return
        }
        heldBack.append(message)
        heldBackBytes += message.frame.readableBytes
        if heldBackBytes > broker.configuration.maxOutboundBytes {
            closeSlowConsumer(because: "replay backlog over max-outbound-bytes")
        }
    }

    // MARK: Slow consumers

    /// The queue crossed the high-water mark: the connection has `slowConsumerTimeout` to drain
    /// below half of it (then NIO reports it writable again).
    private func fellBehind() {
        // Holding writes back to batch more (FlushPolicy.swift) gains nothing once the queue is
        // this long, and only a flush lets it drain: flush at the end of this tick, not after the
        // hold.
        if needsFlush {
            let connection = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.execute { connection.value.flushIfNeeded() }
        }
        guard lifecycle.isOpen, slowConsumerTimer == nil else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        slowConsumerTimer = eventLoop.scheduleTask(in: broker.configuration.slowConsumerTimeout) {
            connection.value.slowConsumerTimer = nil
            connection.value.closeSlowConsumer(because: "behind for slow-consumer-timeout")
        }
    }

    /// Bytes written to the channel and not yet taken by the kernel.
    var bufferedBytes: Int {
        (try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    private func closeSlowConsumer(because cause: String) {
        guard lifecycle.isOpen else { return }
        broker.logger.info("closing slow consumer", metadata: ["session": "\(sessionID)", "cause": "\(cause)"])
        close(.slowConsumer)
    }

    // MARK: Closing

    /// Starts the close handshake: the close frame is queued behind what is buffered, and the
    /// TCP connection is dropped if the peer has not answered within the close timeout.
    func close(_ cause: CloseCause) {
        guard lifecycle.close(cause) else { return }
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        expiryTimer?.cancel()
        expiryTimer = nil
        if cause.disconnect == .protocolError { shard.counters.protocolError("ws_\(cause.codeNumber)") }
        deferredRequests.removeAll()
        heldBack.removeAll()
        heldBackBytes = 0
        write(ServerFrame.close(code: cause.codeNumber, reason: cause.reason, allocator: allocator))
        flushIfNeeded()
        guard let channel = context?.channel else { return }
        closeTimer = eventLoop.scheduleTask(in: broker.configuration.closeTimeout) {
            channel.close(promise: nil)
        }
    }

    /// Drops the TCP connection without further ado (end of a shutdown's grace period).
    func closeNow() {
        context?.close(promise: nil)
    }

    /// Called by the shard's periodic sweep.
    func keepaliveSweep(now: NIODeadline, interval: TimeAmount, timeout: TimeAmount) {
        guard lifecycle.isOpen else { return }
        if sawInbound {
            sawInbound = false
            lastInbound = now
            keepalive = .quiet
            return
        }
        switch keepalive {
        case .quiet where now - lastInbound >= interval:
            sendPing(at: now)
        case .awaitingPong(let since) where now - since >= timeout:
            closeUnresponsive("no pong within pong-timeout")
        case .pingQueued(let since) where now - since >= interval + timeout:
            // Below the slow-consumer mark, yet nothing the connection was owed left in a whole
            // interval and timeout: the peer reads nothing.
            closeUnresponsive("the ping could not be written")
        case .quiet, .awaitingPong, .pingQueued:
            break
        }
    }

    private func sendPing(at now: NIODeadline) {
        guard let context else { return }
        keepalive = .pingQueued(since: now)
        writePending()
        let written = eventLoop.makePromise(of: Void.self)
        written.futureResult.assumeIsolated().whenSuccess { [self] in
            if case .pingQueued = keepalive { keepalive = .awaitingPong(since: eventLoop.now) }
        }
        context.write(NIOAny(ServerFrame.encode(.ping, payload: ByteBuffer(), allocator: allocator)), promise: written)
        markNeedsFlush()
    }

    private func closeUnresponsive(_ why: String) {
        broker.logger.info("closing unresponsive connection", metadata: ["session": "\(sessionID)", "cause": "\(why)"])
        close(.pingTimeout)
        context?.close(promise: nil)
    }
}
