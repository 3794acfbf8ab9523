import NIOCore
import Testing

@testable import BrokerProtocol

@Suite("ServerFrame")
struct ServerFrameTests {
    static let allocator = ByteBufferAllocator()

    /// (payload length, expected header bytes for a text frame)
    static let lengthCases: [(Int, [UInt8])] = [
        (0, [0x81, 0x00]),
        (1, [0x81, 0x01]),
        (125, [0x81, 0x7D]),
        (126, [0x81, 0x7E, 0x00, 0x7E]),
        (127, [0x81, 0x7E, 0x00, 0x7F]),
        (256, [0x81, 0x7E, 0x01, 0x00]),
        (65535, [0x81, 0x7E, 0xFF, 0xFF]),
        (65536, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
        (70_000, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]),
        (1 << 20, [0x81, 0x7F, 0, 0, 0, 0, 0, 0x10, 0x00, 0x00]),
    ]

    @Test("header layout for the 7-bit, 16-bit and 64-bit length forms", arguments: lengthCases)
    func lengths(length: Int, header: [UInt8]) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let frame = ServerFrame.encode(.text, payload: ByteBuffer(bytes: payload), allocator: Self.allocator)
        #expect(frame.readableBytes == header.count + length)
        #expect(Array(frame.bytes.prefix(header.count)) == header)
        let decoded = try #require(DecodedFrame(frame))
        #expect(decoded.fin)
        #expect(!decoded.rsv1 && !decoded.rsv2 && !decoded.rsv3)
        #expect(!decoded.masked)
        #expect(decoded.opcode == 0x1)
        #expect(decoded.headerLength == header.count)
        #expect(decoded.payload == payload)
    }

    @Test("appended text frames equal encoded ones, for every length form", arguments: lengthCases)
    func appendedFramesEqualEncodedOnes(length: Int, header: [UInt8]) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        let single = ServerFrame.encode(.text, payload: ByteBuffer(bytes: payload), allocator: Self.allocator)
        let small = ServerFrame.encode(.text, payload: ByteBuffer(string: "{}"), allocator: Self.allocator)
        // After a frame already in the buffer, and followed by another: nothing overlaps.
        var buffer = Self.allocator.buffer(capacity: 16)
        ServerFrame.appendText(to: &buffer) { $0.writeString("{}") }
        ServerFrame.appendText(to: &buffer) { $0.writeBytes(payload) }
        ServerFrame.appendText(to: &buffer) { $0.writeString("{}") }
        #expect(buffer.bytes == small.bytes + single.bytes + small.bytes)
    }

    /// A replay page appends frames whose header was sized for a guess of the body's length: a
    /// wrong guess, in either direction and across both length boundaries, still makes the frame
    /// `encode` makes.
    @Test(
        "appended frames equal encoded ones, whatever length was expected",
        arguments: [0, 1, 125, 126, 127, 65_535, 65_536, 70_000], [0, 126, 200, 65_536, 70_000])
    func appendedFramesWithAnyExpectedLength(length: Int, expected: Int) throws {
        let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let small = ServerFrame.encode(.text, payload: ByteBuffer(string: "{}"), allocator: Self.allocator)
        for opcode in [ServerFrame.Opcode.text, .binary] {
            let single = ServerFrame.encode(opcode, payload: ByteBuffer(bytes: payload), allocator: Self.allocator)
            var buffer = Self.allocator.buffer(capacity: 16)
            ServerFrame.appendText(to: &buffer) { $0.writeString("{}") }
            ServerFrame.append(opcode, to: &buffer, expectedBodyBytes: expected) { $0.writeBytes(payload) }
            ServerFrame.appendText(to: &buffer) { $0.writeString("{}") }
            #expect(buffer.bytes == small.bytes + single.bytes + small.bytes)
        }
    }

    @Test(
        "opcodes, FIN always set",
        arguments: [
            (ServerFrame.Opcode.continuation, UInt8(0x80)), (.text, 0x81), (.binary, 0x82), (.close, 0x88), (.ping, 0x89),
            (.pong, 0x8A),
        ])
    func opcodes(opcode: ServerFrame.Opcode, firstByte: UInt8) throws {
        let frame = ServerFrame.encode(opcode, payload: ByteBuffer(bytes: [1, 2, 3]), allocator: Self.allocator)
        #expect(frame.bytes == [firstByte, 0x03, 1, 2, 3])
        let decoded = try #require(DecodedFrame(frame))
        #expect(decoded.opcode == opcode.rawValue)
    }

    @Test("rsv1 marks a compressed body", arguments: [0, 125, 126, 65536])
    func rsv1(length: Int) throws {
        for (opcode, firstByte) in [(ServerFrame.Opcode.text, UInt8(0xC1)), (.binary, 0xC2)] {
            let frame = ServerFrame.encode(opcode, rsv1: true, allocator: Self.allocator, bodyCapacity: 0) { body in
                body.writeRepeatingByte(0x5A, count: length)
            }
            #expect(frame.bytes.first == firstByte)
            let decoded = try #require(DecodedFrame(frame))
            #expect(decoded.fin && decoded.rsv1 && !decoded.rsv2 && !decoded.rsv3 && !decoded.masked)
            #expect(decoded.payload == Array(repeating: 0x5A, count: length))
        }
        let plain = ServerFrame.encode(.binary, rsv1: false, allocator: Self.allocator, bodyCapacity: 4) { $0.writeInteger(UInt8(1)) }
        #expect(plain.bytes == [0x82, 0x01, 0x01])
    }

    @Test("the body capacity is only a hint", arguments: [0, 1, 200, 100_000])
    func bodyCapacity(capacity: Int) throws {
        for length in [0, 5, 130, 66_000] {
            let frame = ServerFrame.encode(.binary, allocator: Self.allocator, bodyCapacity: capacity) {
                $0.writeRepeatingByte(0xAB, count: length)
            }
            let decoded = try #require(DecodedFrame(frame))
            #expect(decoded.payload.count == length)
        }
    }

    @Test("text frames hold one encoder reply")
    func textFrame() throws {
        let frame = ServerFrame.text(allocator: Self.allocator) { ServerMessageEncoder.pong(id: RequestID(7), into: &$0) }
        let decoded = try #require(DecodedFrame(frame))
        #expect(decoded.opcode == 0x1)
        #expect(String(decoding: decoded.payload, as: UTF8.self) == #"{"op":"pong","id":7}"#)
        // A reply larger than the capacity hint still gets the right length form.
        let big = String(repeating: "x", count: 300)
        let bigFrame = ServerFrame.text(allocator: Self.allocator, capacity: 16) {
            ServerMessageEncoder.error(RequestError(.internal, big), into: &$0)
        }
        let bigDecoded = try #require(DecodedFrame(bigFrame))
        #expect(bigDecoded.headerLength == 4)
        guard case .error(_, let message, _) = try ServerMessage.parseText(ByteBuffer(bytes: bigDecoded.payload)) else {
            Issue.record("not an error")
            return
        }
        #expect(message == big)
    }

    @Test("close frame with code and reason")
    func close() throws {
        let frame = ServerFrame.close(code: 1008, reason: "slow consumer", allocator: Self.allocator)
        #expect(frame.bytes == [0x88, 15, 0x03, 0xF0] + Array("slow consumer".utf8))
        let empty = ServerFrame.close(code: 1000, reason: "", allocator: Self.allocator)
        #expect(empty.bytes == [0x88, 0x02, 0x03, 0xE8])
        let protocolError = ServerFrame.close(code: 1002, reason: "é", allocator: Self.allocator)
        #expect(protocolError.bytes == [0x88, 0x04, 0x03, 0xEA, 0xC3, 0xA9])
    }

    static let reasons: [String] = [
        String(repeating: "a", count: 123),
        String(repeating: "a", count: 124),
        String(repeating: "a", count: 500),
        String(repeating: "a", count: 121) + "é",  // exactly 123 bytes
        String(repeating: "a", count: 122) + "é",  // é would straddle the limit
        String(repeating: "a", count: 121) + "€",  // € would straddle the limit
        String(repeating: "a", count: 120) + "€",  // exactly 123 bytes
        String(repeating: "a", count: 122) + "😀",
        String(repeating: "a", count: 119) + "😀",  // exactly 123 bytes
        String(repeating: "a", count: 120) + "😀",
        String(repeating: "€", count: 50),  // 41 fit exactly
        String(repeating: "é", count: 100),  // 61 fit, 122 bytes
        String(repeating: "😀", count: 40),  // 30 fit, 120 bytes
        String(repeating: "e\u{301}", count: 60),  // combining marks: cut on a scalar boundary
        "short reason",
    ]

    @Test("close reasons are truncated to ≤ 125 payload bytes on a UTF-8 boundary", arguments: reasons)
    func closeTruncation(reason: String) throws {
        let frame = ServerFrame.close(code: 1001, reason: reason, allocator: Self.allocator)
        let decoded = try #require(DecodedFrame(frame))
        #expect(decoded.opcode == 0x8)
        #expect(decoded.fin && !decoded.masked)
        #expect(decoded.headerLength == 2)
        #expect(decoded.payload.count <= 125)
        #expect(Array(decoded.payload.prefix(2)) == [0x03, 0xE9])
        let reasonBytes = Array(decoded.payload.dropFirst(2))
        let original = Array(reason.utf8)
        // Valid UTF-8, a prefix of the reason, and as long as possible.
        #expect(referenceIsValid(reasonBytes))
        #expect(original.starts(with: reasonBytes))
        if original.count <= 123 {
            #expect(reasonBytes == original)
        } else {
            let nextScalarLength = String(decoding: original[reasonBytes.count...], as: UTF8.self).unicodeScalars.first
                .map { String($0).utf8.count } ?? 0
            #expect(reasonBytes.count + nextScalarLength > 123)
            #expect(reasonBytes.count > 123 - 4)
        }
    }
}

@Suite("Retained message frames completed after their offset is known")
struct AwaitingOffsetFrameTests {
    static let allocator = ByteBufferAllocator()

    /// (topic, payload length, offset): lengths around the 7-bit/16-bit header boundary, offsets
    /// of every width.
    static let cases: [(String, Int, UInt64)] = [
        ("a", 0, 1), ("sensors/a/temp", 60, 9), ("sensors/a/temp", 70, 1_000_000),
        ("t/ü/€", 80, UInt64.max), ("x", 200, 42), ("long/topic/name/with/levels", 70_000, 123_456_789),
    ]

    @Test("text: begin, messageAwaitingOffset, finishMessage, finish == encode in one go", arguments: cases)
    func text(topic: String, length: Int, offset: UInt64) {
        let data = ByteBuffer(string: "\"" + String(repeating: "d", count: length) + "\"")
        var pending = ServerFrame.begin(allocator: Self.allocator, bodyCapacity: 16)
        ServerMessageEncoder.messageAwaitingOffset(topic: topic, data: data, into: &pending)
        ServerMessageEncoder.finishMessage(offset: offset, into: &pending)
        ServerFrame.finish(&pending, .text)
        let whole = ServerFrame.encode(.text, allocator: Self.allocator, bodyCapacity: 16) {
            ServerMessageEncoder.message(topic: topic, data: data, offset: offset, replay: false, into: &$0)
        }
        #expect(pending == whole)
    }

    @Test("binary: the offset set in place == encode in one go", arguments: cases)
    func binary(topic: String, length: Int, offset: UInt64) {
        let payload = ByteBuffer(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0) })
        var pending = ServerFrame.begin(allocator: Self.allocator, bodyCapacity: 16)
        let at = BinaryCodec.encodeMessageAwaitingOffset(topic: topic, payload: payload, into: &pending)
        pending.setInteger(offset, at: at)
        ServerFrame.finish(&pending, .binary)
        let whole = ServerFrame.encode(.binary, allocator: Self.allocator, bodyCapacity: 16) {
            BinaryCodec.encodeMessage(topic: topic, payload: payload, offset: offset, replay: false, into: &$0)
        }
        #expect(pending == whole)
    }
}
