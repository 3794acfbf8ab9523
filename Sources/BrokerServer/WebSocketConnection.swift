import BrokerJournal
import BrokerProtocol
import DequeModule
import NIOCore
import NIOWebSocket

/// One client's WebSocket connection, from the upgrade to the close.
///
/// Confined to its channel's event loop. Inbound frames become messages through
/// `MessageAssembler`; requests are served in the extensions in `WebSocketConnection+*.swift`.
/// Outbound frames are complete, pre-encoded buffers written at the head of the pipeline and
/// flushed once per event-loop tick by the shard.
final class WebSocketConnection: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame

    enum Mode {
        /// PROTOCOL.md pub/sub.
        case broker
        /// Echo every message back (conformance testing).
        case echo
    }

    /// Lifecycle: `open` until either side starts the close handshake.
    enum State {
        case open
        /// The broker sent its close frame and waits for the peer's (or the close timeout).
        case closing
        case closed
    }

    let broker: Broker
    let shard: FanoutShard
    let mode: Mode
    /// permessage-deflate, when the client offered it and the broker accepted.
    let deflate: PerMessageDeflate.Agreement?
    let sessionID: String
    var state = State.open
    /// This handler's context and the one it writes frames through (HeadWriter's), from
    /// `handlerAdded` to `handlerRemoved`. Released there: the context holds the handler, so
    /// keeping it would keep both alive after the channel is gone.
    private(set) var context: ChannelHandlerContext?
    private var writer: ChannelHandlerContext?
    /// The channel's allocator, copied at `handlerAdded` (usable after removal).
    private(set) var allocator = ByteBufferAllocator()
    private var assembler: MessageAssembler
    private var needsFlush = false
    /// The run of the shard's current batch this connection is owed, written at flush.
    private var pendingBatch: TickBatch?
    private var pendingRange = 0..<0
    /// Control replies (acks, pongs, subscribed...) of this tick, in one buffer written at flush:
    /// a publisher with many requests in flight gets one write for all its acks. At most one of
    /// `pendingBatch` and `pendingReplies` is open at a time; starting one writes the other, so
    /// the connection's frames keep their order.
    private var pendingReplies: ByteBuffer?
    private var closeTimer: Scheduled<Void>?
    /// Armed while the connection is behind (unwritable); closes it as a slow consumer if it
    /// does not catch up in time.
    private var slowConsumerTimer: Scheduled<Void>?
    /// Why the connection is ending, once known (for metrics).
    var disconnectReason: DisconnectReason?

    // Fan-out bookkeeping, owned by the shard.
    var shardSlot = -1
    var lastDeliverySequence: UInt64 = 0

    // Keepalive.
    private var sawInbound = true
    /// Set from the loop's clock (`eventLoop.now`) when the handler is added, then by sweeps.
    private var lastInbound = NIODeadline.uptimeNanoseconds(0)
    private var pingSentAt: NIODeadline?

    /// Filters this connection subscribes to.
    var filters: Set<String> = []

    /// Publishes of this connection handed to the journal writer and not yet completed. While
    /// any is outstanding, live publishes are sequenced through the writer too, so that one
    /// connection's messages reach subscribers in the order it sent them.
    var journalRequestsInFlight = 0

    /// The subscription whose retained messages are being replayed, if any.
    var replay: ReplayJob?
    /// Requests that arrived during a replay; served in order once it ends, so that replies keep
    /// the order of requests (a `ping` after a `subscribe` is answered after its replay).
    var deferredRequests = Deque<Result<ControlRequest, RequestError>>()
    /// Live messages held back while a replay runs, and their size.
    var heldBack: [OutboundMessage] = []
    var heldBackBytes = 0
    /// What runs once the channel is writable again (`resumeWhenWritable`).
    private var resumption: Resumption?

    /// Work that waits for the socket to drain.
    enum Resumption {
        /// The replay reads its next page.
        case nextReplayPage
        /// The replay hands over to live delivery.
        case replayHandOver
    }

    /// The connection's loop: its shard's (the server places a connection on its channel's loop).
    var eventLoop: any EventLoop { shard.eventLoop }
    /// False once the handler is gone.
    var isWritable: Bool { context?.channel.isWritable ?? false }

    init(broker: Broker, shard: FanoutShard, mode: Mode, deflate: PerMessageDeflate.Agreement? = nil) {
        self.broker = broker
        self.shard = shard
        self.mode = mode
        self.deflate = deflate
        self.sessionID = broker.nextSessionID()
        self.assembler = MessageAssembler(maxMessageBytes: broker.configuration.maxMessageBytes, deflate: deflate)
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.allocator = context.channel.allocator
        self.lastInbound = context.eventLoop.now
        self.writer = try? context.pipeline.syncOperations.context(handlerType: HeadWriter.self)
        if self.writer == nil { self.writer = context }  // unit tests without a HeadWriter
        shard.add(self)
        shard.counters.connects &+= 1
        if deflate != nil { broker.compressingConnections.wrappingIncrement(ordering: .relaxed) }
        broker.logger.info("connection opened", metadata: [
            "session": "\(sessionID)", "peer": "\(context.channel.remoteAddress?.description ?? "?")",
            "deflate": "\(deflate != nil)",
        ])
        if mode == .broker {
            let welcome = Welcome(
                server: broker.configuration.serverName, session: sessionID,
                maxMessageBytes: broker.configuration.maxMessageBytes, epoch: broker.journal.epoch)
            sendControl { ServerMessageEncoder.welcome(welcome, into: &$0) }
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
        self.writer = nil
    }

    /// Leaves the shard and ends every subscription and wait; once, whichever of channelInactive
    /// and handlerRemoved comes first.
    private func leave() {
        guard shard.remove(self) else { return }
        let wasOpen = state == .open
        state = .closed
        closeTimer?.cancel()
        closeTimer = nil
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        for filter in filters { shard.unsubscribe(self, from: filter) }
        filters.removeAll()
        replay = nil
        resumption = nil
        deferredRequests.removeAll()
        heldBack.removeAll()
        heldBackBytes = 0
        if deflate != nil { broker.compressingConnections.wrappingDecrement(ordering: .relaxed) }
        shard.counters.disconnected(disconnectReason ?? .reset)
        broker.logger.info("connection closed", metadata: [
            "session": "\(sessionID)", "clean": "\(!wasOpen)",
        ])
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        sawInbound = true
        switch state {
        case .closed:
            return
        case .closing:
            // After our close frame only the peer's close matters.
            if frame.opcode == .connectionClose { context.close(promise: nil) }
            return
        case .open:
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
            close(code: code, reason: reason)
        }
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
            case .invalidFrameLength: close(code: 1009, reason: "frame too big")
            default: close(code: 1002, reason: "protocol error")
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
        if replay == nil {
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
            pingSentAt = nil
        case .connectionClose:
            if case .fail(let code, let reason) = CloseFrame.validate(payload) {
                close(code: code, reason: reason)
                return
            }
            // Echo the peer's code (RFC 6455 §5.5.1) and close once it is written, behind what
            // this connection was already owed (no data frame may follow a close frame).
            if disconnectReason == nil { disconnectReason = .clientClose }
            writePending()
            var echoed = payload
            let code = echoed.readInteger(as: UInt16.self) ?? 1000
            state = .closed
            let frame = ServerFrame.close(code: code, reason: "", allocator: allocator)
            guard let writer, let channel = self.context?.channel else { return }
            writer.writeAndFlush(NIOAny(frame)).whenComplete { _ in channel.close(promise: nil) }
        default:
            break
        }
    }

    // MARK: Writing

    /// Queues a complete frame; the shard flushes this connection at the end of the tick.
    func write(_ frame: ByteBuffer) {
        guard let writer else { return }
        writePending()
        writer.write(NIOAny(frame), promise: nil)
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

    /// Runs `resumption` once the channel is writable.
    ///
    /// What is pending is flushed now, whatever the shard's flush pacer would say: a connection
    /// over its high-water mark has a full batch already, and nothing else would make room. The
    /// wait is registered before that flush because NIO reports the channel writable again from
    /// inside the flush when the peer reads fast (the kernel takes everything): a wait registered
    /// after it would miss the only event that ends it.
    func resumeWhenWritable(_ resumption: Resumption) {
        self.resumption = resumption
        flushIfNeeded()
        if isWritable { resumeIfWaiting() }
    }

    private func resumeIfWaiting() {
        guard state == .open, let resumption else { return }
        self.resumption = nil
        switch resumption {
        case .nextReplayPage: readNextReplayPage()
        case .replayHandOver: finishReplay()
        }
    }

    func flushIfNeeded() {
        guard needsFlush else { return }
        needsFlush = false
        guard let writer else { return }
        writePending()
        writer.flush()
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
        writer?.write(NIOAny(batch.slice(pendingRange)), promise: nil)
    }

    private func writePendingReplies() {
        guard let replies = pendingReplies else { return }
        pendingReplies = nil
        writer?.write(NIOAny(replies), promise: nil)
    }

    /// Queues one JSON reply built by `body`, with the tick's other replies.
    func sendControl(_ body: (inout ByteBuffer) -> Void) {
        guard writer != nil else { return }
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
        guard state == .open else { return }
        if replay == nil {
            let compressed = takesCompressedFrame(of: message)
            let (batch, range) = shard.batchSlot(
                topic: message.topic, frame: compressed ? message.compressedFrame! : message.frame, compressed: compressed)
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
        // Holding writes back to batch more (FlushPacer.swift) gains nothing once the queue is
        // this long, and only a flush lets it drain: flush at the end of this tick, not after the
        // pacer's pause.
        if needsFlush {
            let connection = NIOLoopBound(self, eventLoop: eventLoop)
            eventLoop.execute { connection.value.flushIfNeeded() }
        }
        guard state == .open, slowConsumerTimer == nil else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        slowConsumerTimer = eventLoop.scheduleTask(in: broker.configuration.slowConsumerTimeout) {
            connection.value.slowConsumerTimer = nil
            connection.value.closeSlowConsumer(because: "behind for slow-consumer-timeout")
        }
    }

    /// Bytes written to the channel and not yet taken by the kernel.
    private var bufferedBytes: Int {
        (try? context?.channel.syncOptions?.getOption(.bufferedWritableBytes)) ?? 0
    }

    private func closeSlowConsumer(because cause: String) {
        guard state == .open else { return }
        broker.logger.info("closing slow consumer", metadata: ["session": "\(sessionID)", "cause": "\(cause)"])
        close(code: 1008, reason: "slow consumer")
    }

    // MARK: Closing

    /// Starts the close handshake: the close frame is queued behind what is buffered, and the
    /// TCP connection is dropped if the peer has not answered within the close timeout.
    func close(code: UInt16, reason: String) {
        guard state == .open else { return }
        state = .closing
        slowConsumerTimer?.cancel()
        slowConsumerTimer = nil
        disconnectReason = DisconnectReason(closeCode: code, reason: reason)
        if disconnectReason == .protocolError { shard.counters.protocolError("ws_\(code)") }
        replay = nil
        resumption = nil
        deferredRequests.removeAll()
        heldBack.removeAll()
        heldBackBytes = 0
        write(ServerFrame.close(code: code, reason: reason, allocator: allocator))
        flushIfNeeded()
        guard let channel = context?.channel else { return }
        closeTimer = eventLoop.scheduleTask(in: broker.configuration.closeTimeout) {
            channel.close(promise: nil)
        }
    }

    /// Drops the TCP connection without further ado (end of a shutdown's grace period).
    func closeNow() {
        state = .closed
        context?.close(promise: nil)
    }

    /// Called by the shard's periodic sweep.
    func keepaliveSweep(now: NIODeadline, interval: TimeAmount, timeout: TimeAmount) {
        guard state == .open else { return }
        if sawInbound {
            sawInbound = false
            lastInbound = now
            pingSentAt = nil
            return
        }
        if let sentAt = pingSentAt {
            if now - sentAt >= timeout {
                broker.logger.info("closing unresponsive connection", metadata: ["session": "\(sessionID)"])
                close(code: 1001, reason: "ping timeout")
                context?.close(promise: nil)
            }
        } else if now - lastInbound >= interval {
            pingSentAt = now
            write(ServerFrame.encode(.ping, payload: ByteBuffer(), allocator: allocator))
        }
    }
}
