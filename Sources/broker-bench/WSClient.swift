import BrokerProtocol
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic nanoseconds (vDSO clock_gettime: no syscall).
@inline(__always)
func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// `ws://host:port/path`.
struct BenchURL: Sendable, CustomStringConvertible {
    var host: String
    var port: Int
    var path: String

    init?(_ text: String) {
        guard text.hasPrefix("ws://") else { return nil }
        let rest = text.dropFirst(5)
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        path = slash == rest.endIndex ? "/" : String(rest[slash...])
        if let colon = authority.lastIndex(of: ":"), let port = Int(authority[authority.index(after: colon)...]) {
            host = String(authority[..<colon])
            self.port = port
        } else {
            host = String(authority)
            port = 80
        }
        if host.isEmpty { return nil }
    }

    var description: String { "ws://\(host):\(port)\(path)" }
}

/// What a connection's owner sees. Every call happens on the connection's event loop.
protocol WSClientDelegate: AnyObject {
    /// The broker's `welcome` arrived (or, for a client made with `expectsWelcome: false`, the
    /// upgrade succeeded).
    func ready(_ client: WSClient)
    /// A text (`isBinary == false`) or binary message; `payload` is only valid during the call.
    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool)
    func closed(_ client: WSClient, reason: String)
}

/// A minimal WebSocket client as one NIO handler: a hand-rolled HTTP/1.1 upgrade, then a frame
/// parser over the cumulated bytes (server frames are unmasked and unfragmented) and masked
/// frames written into one outbound buffer that is flushed once per read burst (or by `flush()`).
/// No per-message allocations beyond the outbound buffer growth.
///
/// Made with `expectsWelcome: false` it speaks WebSocket only, for another broker's protocol
/// (NATS): it is ready once upgraded and hands every data frame (continuations included) to the
/// delegate, whose protocol may split its messages across frames.
final class WSClient: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    unowned(unsafe) var delegate: any WSClientDelegate
    let url: BenchURL
    let readyPromise: EventLoopPromise<Void>
    private var context: ChannelHandlerContext?
    private var inbound = ByteBuffer()
    private var outbound = ByteBuffer()
    private var scratch = ByteBuffer()
    private var upgraded = false
    private var welcomed = false
    private var isClosed = false
    private let mask: (UInt8, UInt8, UInt8, UInt8)
    /// Send the headers a browser sends with its upgrade request (about 600 bytes instead of
    /// 150): what the broker holds per connection depends on how its first read went.
    private let browserHandshake: Bool
    /// Whether the first frame must be our broker's `welcome`.
    private let expectsWelcome: Bool

    init(
        url: BenchURL, delegate: any WSClientDelegate, eventLoop: any EventLoop, browserHandshake: Bool = false,
        expectsWelcome: Bool = true
    ) {
        self.url = url
        self.browserHandshake = browserHandshake
        self.expectsWelcome = expectsWelcome
        self.delegate = delegate
        self.readyPromise = eventLoop.makePromise()
        let key = UInt32.random(in: 1 ... .max)
        mask = (UInt8(key >> 24), UInt8((key >> 16) & 0xff), UInt8((key >> 8) & 0xff), UInt8(key & 0xff))
    }

    var isOpen: Bool { !isClosed && context != nil }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        outbound = context.channel.allocator.buffer(capacity: 16 * 1024)
        scratch = context.channel.allocator.buffer(capacity: 1024)
    }

    func channelActive(context: ChannelHandlerContext) {
        var request = context.channel.allocator.buffer(capacity: 1024)
        request.writeString(
            "GET \(url.path) HTTP/1.1\r\nHost: \(url.host):\(url.port)\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
        if browserHandshake {
            // What Chromium 120 sends from a page with a cookie, less permessage-deflate (this
            // client does not inflate).
            request.writeString(
                "Pragma: no-cache\r\nCache-Control: no-cache\r\n"
                    + "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
                    + "Origin: http://\(url.host):\(url.port)\r\nAccept-Encoding: gzip, deflate, br\r\n"
                    + "Accept-Language: en-US,en;q=0.9\r\n"
                    + "Cookie: _ga=GA1.1.1234567890.1700000000; theme=dark; session=6f1c2a9e0b7d4e3f\r\n")
        }
        request.writeString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        context.writeAndFlush(wrapOutboundOut(request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound.writeBuffer(&bytes)
        }
        if !upgraded {
            guard let end = inbound.readableBytesView.firstRange(of: [13, 10, 13, 10]) else { return }
            let headLength = end.upperBound - inbound.readerIndex
            let head = inbound.readString(length: headLength) ?? ""
            guard head.hasPrefix("HTTP/1.1 101") else {
                fail("upgrade refused: \(head.prefix(while: { $0 != "\r" }))")
                return
            }
            upgraded = true
            if !expectsWelcome {
                welcomed = true
                readyPromise.succeed(())
                delegate.ready(self)
            }
        }
        parseFrames()
        if inbound.readableBytes == 0 {
            inbound.clear()
        } else if inbound.readerIndex > 65_536 {
            inbound.discardReadBytes()
        }
    }

    private func parseFrames() {
        while !isClosed, inbound.readableBytes >= 2 {
            let start = inbound.readerIndex
            let b0 = inbound.getInteger(at: start, as: UInt8.self)!
            let b1 = inbound.getInteger(at: start + 1, as: UInt8.self)!
            var header = 2
            var length = Int(b1 & 0x7f)
            if length == 126 {
                guard let l = inbound.getInteger(at: start + 2, as: UInt16.self) else { return }
                length = Int(l)
                header = 4
            } else if length == 127 {
                guard let l = inbound.getInteger(at: start + 2, as: UInt64.self) else { return }
                length = Int(l)
                header = 10
            }
            if b1 & 0x80 != 0 { header += 4 }  // servers never mask; tolerate and ignore
            guard inbound.readableBytes >= header + length else { return }
            let payload = inbound.getSlice(at: start + header, length: length)!
            inbound.moveReaderIndex(forwardBy: header + length)
            switch b0 & 0x0f {
            case 0x1, 0x2:
                let isBinary = b0 & 0x0f == 0x2
                if !welcomed {
                    welcomed = true
                    if !isBinary, case .welcome? = try? ServerMessage.parseText(payload) {
                        readyPromise.succeed(())
                        delegate.ready(self)
                    } else {
                        fail("first frame was not a welcome")
                    }
                } else {
                    delegate.received(self, payload: payload, isBinary: isBinary)
                }
            case 0x0 where !expectsWelcome:
                delegate.received(self, payload: payload, isBinary: true)
            case 0x9:
                appendFrame(opcode: 0xA, payload: payload)
            case 0x8:
                var reason = "closed by broker"
                if var body = Optional(payload), let code = body.readInteger(as: UInt16.self) {
                    reason = "close \(code) \(body.readString(length: body.readableBytes) ?? "")"
                }
                appendFrame(opcode: 0x8, payload: payload.getSlice(at: payload.readerIndex, length: min(2, payload.readableBytes))!)
                flush()
                fail(reason)
            case 0xA:
                break
            default:
                fail("unexpected frame opcode \(b0 & 0x0f)")
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail("connection closed")
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("\(error)")
    }

    private func fail(_ reason: String) {
        guard !isClosed else { return }
        isClosed = true
        readyPromise.fail(BenchError(reason))
        if welcomed { delegate.closed(self, reason: reason) }
        context?.close(promise: nil)
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        readyPromise.fail(BenchError("closed"))
        context?.close(promise: nil)
    }

    /// Queues a text frame whose body `body` writes (flushed at the end of the read burst or by `flush()`).
    @inline(__always)
    func sendText(_ body: (inout ByteBuffer) -> Void) {
        scratch.clear()
        body(&scratch)
        appendFrame(opcode: 0x1, payload: scratch)
    }

    @inline(__always)
    func sendBinary(_ body: (inout ByteBuffer) -> Void) {
        scratch.clear()
        body(&scratch)
        appendFrame(opcode: 0x2, payload: scratch)
    }

    /// Writes a complete masked client frame into the outbound buffer.
    private func appendFrame(opcode: UInt8, payload: ByteBuffer) {
        guard !isClosed else { return }
        let length = payload.readableBytes
        outbound.writeInteger(0x80 | opcode)
        if length < 126 {
            outbound.writeInteger(UInt8(0x80 | length))
        } else if length <= 0xffff {
            outbound.writeInteger(UInt8(0x80 | 126))
            outbound.writeInteger(UInt16(length))
        } else {
            outbound.writeInteger(UInt8(0x80 | 127))
            outbound.writeInteger(UInt64(length))
        }
        let m = mask
        outbound.writeMultipleIntegers(m.0, m.1, m.2, m.3)
        withUnsafeBytes(of: m) { keys in
            payload.withUnsafeReadableBytes { source in
                _ = outbound.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { target in
                    for i in 0..<length { target[i] = source[i] ^ keys[i & 3] }
                    return length
                }
            }
        }
    }

    /// Hands whatever is queued to the socket.
    func flush() {
        guard let context, outbound.readableBytes > 0, !isClosed else { return }
        let chunk = outbound
        outbound = context.channel.allocator.buffer(capacity: max(16 * 1024, chunk.readableBytes))
        context.writeAndFlush(wrapOutboundOut(chunk), promise: nil)
    }

    /// Connects and upgrades; the future completes when the broker's `welcome` arrived (when
    /// upgraded, with `expectsWelcome: false`).
    /// With `source`, the socket is bound to that local address (port 0) before it connects.
    static func connect(
        url: BenchURL, on eventLoop: any EventLoop, delegate: any WSClientDelegate, source: SocketAddress? = nil,
        browserHandshake: Bool = false, expectsWelcome: Bool = true
    ) -> (WSClient, EventLoopFuture<Void>) {
        let client = WSClient(
            url: url, delegate: delegate, eventLoop: eventLoop, browserHandshake: browserHandshake,
            expectsWelcome: expectsWelcome)
        let bound = NIOLoopBound(client, eventLoop: eventLoop)
        var bootstrap = ClientBootstrap(group: eventLoop)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(10))
        if let source {
            bootstrap = bootstrap.bind(to: source)
            #if os(Linux)
            // The kernel picks the source port at connect, for the whole 4-tuple, instead of
            // reserving one per source address at bind.
            bootstrap = bootstrap.channelOption(
                ChannelOptions.Types.SocketOption(level: .ip, name: NIOBSDSocket.Option(rawValue: 24)), value: 1)  // IP_BIND_ADDRESS_NO_PORT
            #endif
        }
        let connected = bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(bound.value)
                }
            }
            .connect(host: url.host, port: url.port)
        connected.whenFailure { error in bound.value.readyPromise.fail(error) }
        return (client, client.readyPromise.futureResult)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Fast readers for the broker's hot replies (the generic `ServerMessage.parseText` builds a
/// dictionary per frame; these only look at the fixed prefix `ServerMessageEncoder` writes).
enum FastParse {
    static let ackPrefix = Array(#"{"op":"ack","id":"#.utf8)
    static let messagePrefix = Array(#"{"op":"message","topic":"#.utf8)
    static let dataKey = Array(#","data":""#.utf8)  // `,"data":"`

    static func hasPrefix(_ buffer: ByteBuffer, _ prefix: [UInt8]) -> Bool {
        buffer.withUnsafeReadableBytes { bytes in
            bytes.count >= prefix.count && prefix.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, prefix.count) == 0 }
        }
    }

    /// The numeric id of an `ack`, or nil if this is not an ack with a number id.
    static func ackID(_ buffer: ByteBuffer) -> UInt64? {
        buffer.withUnsafeReadableBytes { bytes -> UInt64? in
            let n = ackPrefix.count
            guard bytes.count > n, ackPrefix.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, n) == 0 }) else { return nil }
            var value: UInt64 = 0
            var i = n
            while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                value = value &* 10 &+ UInt64(bytes[i] &- 48)
                i += 1
            }
            return i > n ? value : nil
        }
    }

    /// For a text `message` whose data is a JSON string starting with digits: those digits.
    /// Returns nil for other frames, and 0 when the data has no leading digits.
    static func messageStamp(_ buffer: ByteBuffer) -> UInt64? {
        buffer.withUnsafeReadableBytes { bytes -> UInt64? in
            let n = messagePrefix.count
            guard bytes.count > n, messagePrefix.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress!, n) == 0 }) else { return nil }
            // Skip the topic string (bench topics need no escapes); bytes[n] is its opening quote.
            var i = n + 1
            while i < bytes.count, bytes[i] != 34 { i += 1 }
            i += 1
            let k = dataKey.count
            guard i + k <= bytes.count, dataKey.withUnsafeBytes({ memcmp($0.baseAddress!, bytes.baseAddress! + i, k) == 0 }) else { return 0 }
            i += k
            var value: UInt64 = 0
            while i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 {
                value = value &* 10 &+ UInt64(bytes[i] &- 48)
                i += 1
            }
            return value
        }
    }
}

/// Microsecond histogram: exact below 100 ms, then 1 ms buckets up to 100 s.
struct Histogram {
    private var fine = [UInt32](repeating: 0, count: 100_000)
    private var coarse = [UInt32](repeating: 0, count: 100_000)
    private(set) var count = 0
    private(set) var maxMicros: UInt64 = 0

    @inline(__always)
    mutating func record(nanos: UInt64) {
        let micros = nanos / 1_000
        count += 1
        if micros > maxMicros { maxMicros = micros }
        if micros < 100_000 {
            fine[Int(micros)] &+= 1
        } else {
            coarse[Int(min(micros / 1_000, 99_999))] &+= 1
        }
    }

    /// The value (in milliseconds) at quantile `q`.
    func quantileMillis(_ q: Double) -> Double {
        guard count > 0 else { return 0 }
        let rank = max(1, Int((Double(count) * q).rounded(.up)))
        var seen = 0
        for (i, c) in fine.enumerated() where c > 0 {
            seen += Int(c)
            if seen >= rank { return Double(i) / 1_000 }
        }
        for (i, c) in coarse.enumerated() where c > 0 {
            seen += Int(c)
            if seen >= rank { return Double(i) }
        }
        return Double(maxMicros) / 1_000
    }
}
