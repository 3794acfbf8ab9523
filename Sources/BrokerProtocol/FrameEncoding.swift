import NIOCore

/// Builds complete server-to-client WebSocket frames (RFC 6455 §5.2: FIN set, unmasked) in one
/// buffer: the body is written first behind ten reserved bytes and the header is then filled in
/// just before it, so a frame costs one allocation and no copy. The result is shared, as is, by
/// every connection that receives it.
public enum ServerFrame {
    public enum Opcode: UInt8, Sendable {
        case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA
    }

    static let maxHeaderBytes = 10

    /// Encodes a frame whose body `writeBody` writes. `rsv1` marks a permessage-deflate body.
    public static func encode(
        _ opcode: Opcode, rsv1: Bool = false, allocator: ByteBufferAllocator, bodyCapacity: Int,
        writeBody: (inout ByteBuffer) -> Void
    ) -> ByteBuffer {
        var buffer = begin(allocator: allocator, bodyCapacity: bodyCapacity)
        writeBody(&buffer)
        finish(&buffer, opcode, rsv1: rsv1)
        return buffer
    }

    /// A buffer whose readable bytes will be a frame's body, with room for the header in front.
    /// Write the body, then call `finish`. (`encode` does both; the split serves bodies that are
    /// completed on another thread, such as a retained message waiting for its offset.)
    public static func begin(allocator: ByteBufferAllocator, bodyCapacity: Int) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: maxHeaderBytes + bodyCapacity)
        buffer.moveWriterIndex(forwardBy: maxHeaderBytes)
        buffer.moveReaderIndex(forwardBy: maxHeaderBytes)
        return buffer
    }

    /// Writes the header in front of the body that `begin`'s buffer now holds.
    public static func finish(_ buffer: inout ByteBuffer, _ opcode: Opcode, rsv1: Bool = false) {
        let length = buffer.readableBytes
        let start = maxHeaderBytes - headerBytes(forBody: length)
        setHeader(in: &buffer, at: start, opcode, rsv1: rsv1, bodyLength: length)
        buffer.moveReaderIndex(to: start)
    }

    /// The length of a header for a body of `length` bytes: 2, 4 or 10.
    static func headerBytes(forBody length: Int) -> Int {
        length < 126 ? 2 : (length <= Int(UInt16.max) ? 4 : 10)
    }

    /// Sets the header of a frame whose body of `bodyLength` bytes follows at `start` + the
    /// header's length.
    private static func setHeader(in buffer: inout ByteBuffer, at start: Int, _ opcode: Opcode, rsv1: Bool, bodyLength length: Int) {
        let first: UInt8 = 0x80 | (rsv1 ? 0x40 : 0) | opcode.rawValue
        buffer.setInteger(first, at: start)
        switch headerBytes(forBody: length) {
        case 2: buffer.setInteger(UInt8(length), at: start + 1)
        case 4:
            buffer.setInteger(UInt8(126), at: start + 1)
            buffer.setInteger(UInt16(length), at: start + 2)
        default:
            buffer.setInteger(UInt8(127), at: start + 1)
            buffer.setInteger(UInt64(length), at: start + 2)
        }
    }

    /// The opcode and body of a complete, unmasked frame made by `encode` (nil if it is not one).
    public static func parse(_ frame: ByteBuffer) -> (opcode: Opcode, body: ByteBuffer)? {
        guard let first = frame.getInteger(at: frame.readerIndex, as: UInt8.self),
            let second = frame.getInteger(at: frame.readerIndex + 1, as: UInt8.self),
            let opcode = Opcode(rawValue: first & 0x0F), second & 0x80 == 0
        else { return nil }
        let headerBytes: Int
        switch second & 0x7F {
        case 126: headerBytes = 4
        case 127: headerBytes = 10
        default: headerBytes = 2
        }
        guard frame.readableBytes >= headerBytes,
            let body = frame.getSlice(at: frame.readerIndex + headerBytes, length: frame.readableBytes - headerBytes)
        else { return nil }
        return (opcode, body)
    }

    /// A frame carrying `payload` as it is (control frames, echoed data).
    public static func encode(_ opcode: Opcode, payload: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        encode(opcode, allocator: allocator, bodyCapacity: payload.readableBytes) { buffer in
            var payload = payload
            buffer.writeBuffer(&payload)
        }
    }

    /// A close frame with a status code and a reason (truncated to fit the 125-byte limit on a
    /// UTF-8 character boundary).
    public static func close(code: UInt16, reason: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        encode(.close, allocator: allocator, bodyCapacity: 125) { buffer in
            buffer.writeInteger(code)
            var reasonBytes = Substring(reason).utf8.prefix(123)
            while !reasonBytes.isEmpty, String(reasonBytes) == nil {
                reasonBytes = reasonBytes.dropLast()
            }
            buffer.writeBytes(reasonBytes)
        }
    }

    /// Appends a text frame whose body `writeBody` writes to `buffer`, after the frames it may
    /// already hold, so that many replies can share one buffer and one write (acks, pongs: bodies
    /// under 126 bytes, written in place).
    public static func appendText(to buffer: inout ByteBuffer, _ writeBody: (inout ByteBuffer) -> Void) {
        append(.text, to: &buffer, expectedBodyBytes: 0, writeBody)
    }

    /// Appends a frame whose body `writeBody` writes to `buffer`, after the frames it may already
    /// hold: a replay page goes out as one buffer and one write. The header is sized for
    /// `expectedBodyBytes`; a body that turns out to need another size of header is moved once.
    public static func append(
        _ opcode: Opcode, to buffer: inout ByteBuffer, expectedBodyBytes: Int, _ writeBody: (inout ByteBuffer) -> Void
    ) {
        let start = buffer.writerIndex
        let reserved = headerBytes(forBody: expectedBodyBytes)
        buffer.writeRepeatingByte(0, count: reserved)
        writeBody(&buffer)
        let length = buffer.writerIndex - start - reserved
        let needed = headerBytes(forBody: length)
        if needed != reserved {
            let body = buffer.getBytes(at: start + reserved, length: length)!
            buffer.moveWriterIndex(to: start)
            buffer.writeRepeatingByte(0, count: needed)
            buffer.writeBytes(body)
        }
        setHeader(in: &buffer, at: start, opcode, rsv1: false, bodyLength: length)
    }

    /// A text frame holding one JSON reply made by `ServerMessageEncoder`.
    public static func text(allocator: ByteBufferAllocator, capacity: Int = 128, _ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        encode(.text, allocator: allocator, bodyCapacity: capacity, writeBody: body)
    }
}
