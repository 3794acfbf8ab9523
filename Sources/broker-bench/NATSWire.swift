import BrokerProtocol
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The parts of the NATS client protocol a load generator speaks (docs.nats.io, "Client
/// Protocol"): what the client writes, one protocol message per call, into a WebSocket frame body.
enum NATSWire {
    /// No `+OK` per request (`verbose: false`), no header support, so only `MSG` (never `HMSG`).
    static func writeConnect(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"headers\":false}\r\n")
    }

    /// `SUB <subject> <sid>\r\n`; `subject` writes the subject (or filter).
    static func writeSubscribe(sid: Int, into buffer: inout ByteBuffer, subject: (inout ByteBuffer) -> Void) {
        buffer.writeStaticString("SUB ")
        subject(&buffer)
        buffer.writeStaticString(" ")
        buffer.writeDecimal(UInt64(sid))
        buffer.writeStaticString("\r\n")
    }

    /// `PUB <subject> <n>\r\n`; the caller then writes the n payload bytes and `finishPublish`.
    static func writePublishHeader(payloadLength: Int, into buffer: inout ByteBuffer, subject: (inout ByteBuffer) -> Void) {
        buffer.writeStaticString("PUB ")
        subject(&buffer)
        buffer.writeStaticString(" ")
        buffer.writeDecimal(UInt64(payloadLength))
        buffer.writeStaticString("\r\n")
    }

    static func finishPublish(into buffer: inout ByteBuffer) {
        buffer.writeStaticString("\r\n")
    }

    static func writePing(into buffer: inout ByteBuffer) { buffer.writeStaticString("PING\r\n") }

    static func writePong(into buffer: inout ByteBuffer) { buffer.writeStaticString("PONG\r\n") }
}

/// One protocol message from the server. The buffers are slices of the stream, valid during the
/// call that hands them over.
enum NATSServerMessage {
    case info
    case msg(subject: ByteBuffer, sid: UInt64, payload: ByteBuffer)
    case ping
    case pong
    case ok
    case err(String)
}

struct NATSProtocolError: Error, CustomStringConvertible {
    var description: String
}

/// Cuts the server's byte stream into protocol messages. Over WebSocket the stream arrives in
/// frames that may hold several messages or part of one (nats-server frames its outbound buffers,
/// not its messages); what a frame leaves incomplete waits here for the next. A value, no I/O.
struct NATSStreamParser {
    /// nats-server's default `max_control_line`.
    static let maxControlLine = 4096

    private var pending = ByteBuffer()

    /// Hands every complete message in `frame` (after what earlier frames left) to `handle`.
    mutating func consume(_ frame: ByteBuffer, _ handle: (NATSServerMessage) -> Void) throws(NATSProtocolError) {
        if pending.readableBytes == 0 {
            var stream = frame
            try Self.parse(&stream, handle)
            if stream.readableBytes > 0 {
                pending.clear()
                pending.writeBuffer(&stream)
            }
        } else {
            var frame = frame
            pending.writeBuffer(&frame)
            try Self.parse(&pending, handle)
            if pending.readableBytes == 0 {
                pending.clear()
            } else if pending.readerIndex > 65_536 {
                pending.discardReadBytes()
            }
        }
    }

    /// Consumes whole messages from `stream`, leaves an incomplete last one unread.
    private static func parse(_ stream: inout ByteBuffer, _ handle: (NATSServerMessage) -> Void) throws(NATSProtocolError) {
        while stream.readableBytes > 0 {
            guard let head = try Self.head(stream) else { return }
            switch head.kind {
            case .msg(let subjectAt, let subjectLength, let sid, let payloadLength):
                let payloadAt = head.lineLength
                // The payload and its \r\n.
                guard stream.readableBytes >= payloadAt + payloadLength + 2 else { return }
                let start = stream.readerIndex
                handle(
                    .msg(
                        subject: stream.getSlice(at: start + subjectAt, length: subjectLength)!, sid: sid,
                        payload: stream.getSlice(at: start + payloadAt, length: payloadLength)!))
                stream.moveReaderIndex(forwardBy: payloadAt + payloadLength + 2)
            case .other(let message):
                stream.moveReaderIndex(forwardBy: head.lineLength)
                handle(message)
            }
        }
    }

    private enum Head {
        /// Offsets from the start of the line.
        case msg(subjectAt: Int, subjectLength: Int, sid: UInt64, payloadLength: Int)
        case other(NATSServerMessage)
    }

    /// The first line of `stream`, parsed: nil while it is incomplete. `lineLength` counts its \r\n.
    private static func head(_ stream: ByteBuffer) throws(NATSProtocolError) -> (kind: Head, lineLength: Int)? {
        let parsed: Result<(kind: Head, lineLength: Int)?, NATSProtocolError> = stream.withUnsafeReadableBytes { bytes in
            let scan = min(bytes.count, maxControlLine + 2)
            guard let base = bytes.baseAddress, let found = memchr(base, 10, scan) else {
                return bytes.count > maxControlLine
                    ? .failure(NATSProtocolError(description: "nats: control line longer than \(maxControlLine) bytes"))
                    : .success(nil)
            }
            let newline = base.distance(to: UnsafeRawPointer(found))
            let lineLength = newline + 1
            var end = newline
            if end > 0, bytes[end - 1] == 13 { end -= 1 }
            let line = UnsafeRawBufferPointer(rebasing: bytes[0..<end])
            func starts(_ word: StaticString) -> Bool {
                let n = word.utf8CodeUnitCount
                guard line.count >= n else { return false }
                for i in 0..<n where line[i] | 0x20 != word.utf8Start[i] | 0x20 { return false }  // case-insensitive
                return true
            }
            if starts("MSG"), line.count > 3, line[3] == 32 || line[3] == 9 {
                guard let msg = msgHead(line) else {
                    return .failure(NATSProtocolError(description: "nats: bad MSG line \(String(decoding: line, as: UTF8.self))"))
                }
                return .success((.msg(subjectAt: msg.subjectAt, subjectLength: msg.subjectLength, sid: msg.sid, payloadLength: msg.payloadLength), lineLength))
            }
            if starts("PING") { return .success((.other(.ping), lineLength)) }
            if starts("PONG") { return .success((.other(.pong), lineLength)) }
            if starts("+OK") { return .success((.other(.ok), lineLength)) }
            if starts("INFO") { return .success((.other(.info), lineLength)) }
            if starts("-ERR") { return .success((.other(.err(String(decoding: line, as: UTF8.self))), lineLength)) }
            return .failure(NATSProtocolError(description: "nats: unexpected line \(String(decoding: line.prefix(200), as: UTF8.self))"))
        }
        return try parsed.get()
    }

    /// `MSG <subject> <sid> [reply-to] <#bytes>`, fields separated by spaces or tabs.
    private static func msgHead(_ line: UnsafeRawBufferPointer) -> (subjectAt: Int, subjectLength: Int, sid: UInt64, payloadLength: Int)? {
        withUnsafeTemporaryAllocation(of: (at: Int, length: Int).self, capacity: 5) { fields in
            var count = 0
            var i = 0
            while i < line.count {
                while i < line.count, line[i] == 32 || line[i] == 9 { i += 1 }
                let start = i
                while i < line.count, line[i] != 32, line[i] != 9 { i += 1 }
                guard i > start else { break }
                guard count < 5 else { return nil }
                fields[count] = (start, i - start)
                count += 1
            }
            guard count == 4 || count == 5,
                let sid = decimal(line, fields[2]), let length = decimal(line, fields[count - 1])
            else { return nil }
            return (fields[1].at, fields[1].length, sid, Int(length))
        }
    }

    private static func decimal(_ line: UnsafeRawBufferPointer, _ field: (at: Int, length: Int)) -> UInt64? {
        guard field.length > 0, field.length <= 18 else { return nil }
        var value: UInt64 = 0
        for i in field.at..<(field.at + field.length) {
            let digit = line[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + UInt64(digit)
        }
        return value
    }
}
