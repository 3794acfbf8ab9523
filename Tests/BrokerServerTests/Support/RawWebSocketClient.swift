import BrokerProtocol
import BrokerTestSupport
import NIOCore
import NIOPosix
import NIOSSL

@testable import BrokerServer

/// A deliberately low-level WebSocket client for integration tests: it writes the upgrade
/// request and every frame byte by byte, so tests can send what a real client library would
/// refuse to (unmasked frames, bad opcodes, broken UTF-8, truncated binary publishes).
final class RawWebSocketClient: @unchecked Sendable {
    struct Frame: Equatable, CustomStringConvertible {
        var fin: Bool
        var rsv1: Bool
        var opcode: UInt8
        var payload: [UInt8]

        var text: String { String(decoding: payload, as: UTF8.self) }
        /// The message's bytes: inflated when RSV1 is set (permessage-deflate).
        var messageBytes: [UInt8] {
            guard rsv1 else { return payload }
            var output = ByteBuffer()
            let inflater = MessageInflater(windowBits: 15)!
            guard inflater.inflate(ByteBuffer(bytes: payload), into: &output, limit: 1 << 26) == .ok,
                inflater.finish(into: &output, limit: 1 << 26) == .ok
            else { return [] }
            return Array(output.readableBytesView)
        }
        var closeCode: UInt16? {
            guard opcode == 0x8, payload.count >= 2 else { return nil }
            return UInt16(payload[0]) << 8 | UInt16(payload[1])
        }
        var description: String {
            opcode == 0x1 ? "text(\(text))" : "frame(op: \(opcode), \(payload.count) bytes)"
        }
    }

    enum ClientError: Error, Equatable { case closed, timeout, handshake(String) }

    /// Hands every inbound chunk to an AsyncStream; the test reads it at its own pace.
    final class Collector: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let continuation: AsyncStream<ByteBuffer>.Continuation
        init(_ continuation: AsyncStream<ByteBuffer>.Continuation) { self.continuation = continuation }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { continuation.yield(unwrapInboundIn(data)) }
        func channelInactive(context: ChannelHandlerContext) { continuation.finish() }
    }

    let channel: any Channel
    private var inbound: AsyncStream<ByteBuffer>.AsyncIterator
    private var buffer = ByteBuffer()
    private(set) var handshakeResponse = ""

    private init(channel: any Channel, inbound: AsyncStream<ByteBuffer>) {
        self.channel = channel
        self.inbound = inbound.makeAsyncIterator()
    }

    /// A TCP (or, with `tls`, TLS) connection to the broker whose inbound bytes arrive on the
    /// returned stream; shared with HTTPTestClient.
    static func openCollecting(port: Int, tls: NIOSSLContext?) async throws -> (any Channel, AsyncStream<ByteBuffer>) {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(testConnectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: "localhost"))
                    }
                    try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return (channel, stream)
    }

    /// Connects and performs the upgrade. `extraHeaders` lets tests offer extensions.
    /// With `tls`, the connection speaks TLS first (wss://).
    static func connect(
        port: Int, path: String = "/ws", extraHeaders: [String] = [], expectUpgrade: Bool = true, tls: NIOSSLContext? = nil
    ) async throws -> RawWebSocketClient {
        let (channel, stream) = try await openCollecting(port: port, tls: tls)
        let client = RawWebSocketClient(channel: channel, inbound: stream)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        for header in extraHeaders { request += header + "\r\n" }
        request += "\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        try await client.readHandshake()
        if expectUpgrade && !client.handshakeResponse.hasPrefix("HTTP/1.1 101") {
            throw ClientError.handshake(client.handshakeResponse)
        }
        return client
    }

    private func readHandshake() async throws {
        while true {
            if let range = buffer.readableBytesView.firstRange(of: Array("\r\n\r\n".utf8)) {
                let length = range.upperBound - buffer.readableBytesView.startIndex
                handshakeResponse = buffer.readString(length: length) ?? ""
                return
            }
            guard var chunk = await inbound.next() else { throw ClientError.closed }
            buffer.writeBuffer(&chunk)
        }
    }

    // MARK: Sending

    /// Writes one frame; masked with a fixed key unless `masked` is false.
    func send(opcode: UInt8, payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0, masked: Bool = true) async throws {
        var frame = ByteBuffer()
        frame.writeInteger(UInt8((fin ? 0x80 : 0) | (rsv << 4) | opcode))
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            frame.writeInteger(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame.writeInteger(maskBit | 126)
            frame.writeInteger(UInt16(payload.count))
        } else {
            frame.writeInteger(maskBit | 127)
            frame.writeInteger(UInt64(payload.count))
        }
        if masked {
            let key: [UInt8] = [0x37, 0xFA, 0x21, 0x3D]
            frame.writeBytes(key)
            frame.writeBytes(payload.enumerated().map { $0.element ^ key[$0.offset % 4] })
        } else {
            frame.writeBytes(payload)
        }
        try await channel.writeAndFlush(frame)
    }

    func sendText(_ text: String) async throws {
        try await send(opcode: 0x1, payload: Array(text.utf8))
    }

    /// Sends a message compressed with permessage-deflate (RSV1 on its first frame), cut into
    /// `fragments` frames.
    func sendCompressed(opcode: UInt8, payload: [UInt8], fragments: Int = 1) async throws {
        var compressed = ByteBuffer()
        guard MessageDeflater(level: 6)!.compress(ByteBuffer(bytes: payload), into: &compressed) else {
            throw ClientError.handshake("deflate failed")
        }
        let bytes = Array(compressed.readableBytesView)
        let size = max(1, (bytes.count + fragments - 1) / fragments)
        var start = 0
        var first = true
        repeat {
            let end = min(bytes.count, start + size)
            try await send(
                opcode: first ? opcode : 0x0, payload: Array(bytes[start..<end]), fin: end == bytes.count,
                rsv: first ? 0x4 : 0)
            first = false
            start = end
        } while start < bytes.count
    }

    func sendBinaryPublish(topic: String, payload: [UInt8], retain: Bool = false, ackID: UInt32? = nil) async throws {
        var body = ByteBuffer()
        BinaryCodec.encodePublish(topic: topic, payload: ByteBuffer(bytes: payload), retain: retain, ackID: ackID, into: &body)
        try await send(opcode: 0x2, payload: Array(body.readableBytesView))
    }

    // MARK: Receiving

    /// The next frame from the broker, or throws on timeout or close of the TCP connection.
    func nextFrame(timeout: Duration = .seconds(5)) async throws -> Frame {
        // A frame already received needs no timer: a reader of a long replay takes most frames
        // from its buffer, as fast as a native client, instead of starting two tasks for each.
        if let frame = parseFrame() { return frame }
        let timeout = patience(timeout)
        return try await withThrowingTaskGroup(of: Frame?.self) { group in
            group.addTask { try await self.readFrame() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            guard let frame = try await group.next()! else { throw ClientError.timeout }
            return frame
        }
    }

    private func readFrame() async throws -> Frame {
        while true {
            if let frame = parseFrame() { return frame }
            guard var chunk = await inbound.next() else { throw ClientError.closed }
            buffer.writeBuffer(&chunk)
        }
    }

    private func parseFrame() -> Frame? {
        var view = buffer
        guard let first = view.readInteger(as: UInt8.self), let second = view.readInteger(as: UInt8.self) else { return nil }
        var length = Int(second & 0x7F)
        if length == 126 {
            guard let extended = view.readInteger(as: UInt16.self) else { return nil }
            length = Int(extended)
        } else if length == 127 {
            guard let extended = view.readInteger(as: UInt64.self) else { return nil }
            length = Int(extended)
        }
        guard let payload = view.readBytes(length: length) else { return nil }
        buffer = view
        // Moving the unread bytes down after every frame would copy a large read once per frame.
        if buffer.readerIndex > 1 << 20 { buffer.discardReadBytes() }
        return Frame(fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, opcode: first & 0x0F, payload: payload)
    }

    /// The next text frame parsed as a broker message, answering pings on the way as a client
    /// must (RFC 6455 5.5.2): a test that outlasts ping-interval + pong-timeout, as a slow
    /// sanitizer build does, would otherwise see the broker close the connection (1001).
    func nextMessage(timeout: Duration = .seconds(5)) async throws -> ServerMessage {
        while true {
            let frame = try await nextFrame(timeout: timeout)
            switch frame.opcode {
            case 0x9:
                try await send(opcode: 0xA, payload: frame.payload)
            case 0x1: return try ServerMessage.parseText(ByteBuffer(bytes: frame.messageBytes))
            case 0x2: return .message(try BinaryCodec.decodeMessage(ByteBuffer(bytes: frame.messageBytes)))
            default: throw ClientError.handshake("unexpected frame \(frame)")
            }
        }
    }

    /// Reads until the broker's close frame and returns its code.
    func expectClose(timeout: Duration = .seconds(5)) async throws -> UInt16? {
        while true {
            let frame = try await nextFrame(timeout: timeout)
            if frame.opcode == 0x8 { return frame.closeCode }
        }
    }

    func close() async {
        try? await channel.close()
    }
}
