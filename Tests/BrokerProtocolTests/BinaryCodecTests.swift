import NIOCore
import Testing

@testable import BrokerProtocol

@Suite("BinaryCodec")
struct BinaryCodecTests {
    static func frame(kind: UInt8 = 0x01, flags: UInt8 = 0, topic: [UInt8], id: [UInt8] = [], payload: [UInt8] = []) -> [UInt8] {
        [kind, flags, UInt8(topic.count >> 8), UInt8(topic.count & 0xFF)] + topic + id + payload
    }

    static func decode(_ bytes: [UInt8], limits: RequestLimits = .init()) -> Result<ControlRequest, RequestError> {
        BinaryCodec.decodePublish(ByteBuffer(bytes: bytes), limits: limits)
    }

    /// (name, frame, error code, id JSON)
    static let malformed: [(String, [UInt8], ErrorCode, String?)] = [
        ("empty", [], .badRequest, nil),
        ("1 byte", [0x01], .badRequest, nil),
        ("2 bytes", [0x01, 0x00], .badRequest, nil),
        ("3 bytes", [0x01, 0x00, 0x00], .badRequest, nil),
        ("kind 0x00", frame(kind: 0x00, topic: Array("a".utf8)), .badRequest, nil),
        ("kind 0x02 (a message)", frame(kind: 0x02, topic: Array("a".utf8)), .badRequest, nil),
        ("kind 0x03", frame(kind: 0x03, topic: Array("a".utf8)), .badRequest, nil),
        ("kind 0xFF", frame(kind: 0xFF, topic: Array("a".utf8)), .badRequest, nil),
        ("kind 0x02 with ack flag", frame(kind: 0x02, flags: 0x02, topic: Array("a".utf8), id: [0, 0, 0, 1]), .badRequest, nil),
        ("topic length past the end by one", [0x01, 0x00, 0x00, 0x02, 0x61], .badRequest, nil),
        ("topic length past the end, no topic", [0x01, 0x00, 0x00, 0x01], .badRequest, nil),
        ("topic length 0xFFFF", [0x01, 0x00, 0xFF, 0xFF] + Array("abc".utf8), .badRequest, nil),
        ("ack flag, id missing", frame(flags: 0x02, topic: Array("a".utf8)), .badRequest, nil),
        ("ack flag, id cut to 3 bytes", frame(flags: 0x02, topic: Array("a".utf8), id: [0, 0, 1]), .badRequest, nil),
        ("ack + retain flags, id cut", frame(flags: 0x03, topic: Array("a".utf8), id: [0]), .badRequest, nil),
        ("empty topic", frame(topic: []), .invalidTopic, nil),
        ("invalid UTF-8 topic (overlong)", frame(topic: [0xC0, 0xAF]), .invalidTopic, nil),
        ("invalid UTF-8 topic (surrogate)", frame(topic: [0x61, 0xED, 0xA0, 0x80]), .invalidTopic, nil),
        ("invalid UTF-8 topic (truncated)", frame(topic: [0x61, 0xC3]), .invalidTopic, nil),
        ("invalid UTF-8 topic, with id", frame(flags: 0x02, topic: [0xFF], id: [0, 0, 0, 9]), .invalidTopic, "9"),
        ("wildcard topic +", frame(topic: Array("a/+".utf8)), .invalidTopic, nil),
        ("wildcard topic #", frame(topic: Array("#".utf8)), .invalidTopic, nil),
        ("wildcard topic, with id", frame(flags: 0x02, topic: Array("a/#".utf8), id: [0, 0, 1, 0]), .invalidTopic, "256"),
        ("NUL in topic", frame(topic: [0x61, 0x00, 0x62]), .invalidTopic, nil),
        ("topic too long", frame(topic: Array(repeating: 0x61, count: Topic.defaultMaxBytes + 1)), .invalidTopic, nil),
        ("topic too deep", frame(flags: 0x02, topic: Array(String(repeating: "a/", count: 32).utf8) + [0x61], id: [0, 0, 0, 5]), .invalidTopic, "5"),
        ("newline in topic", frame(topic: [0x61, 0x0A, 0x62]), .invalidTopic, nil),
        ("escape in topic", frame(topic: [0x1B, 0x5B, 0x32, 0x4A]), .invalidTopic, nil),
        ("DEL in topic", frame(topic: [0x61, 0x7F]), .invalidTopic, nil),
        ("$ topic", frame(topic: Array("$sys/x".utf8)), .forbidden, nil),
        ("$ topic, with id", frame(flags: 0x03, topic: Array("$x".utf8), id: [0xFF, 0xFF, 0xFF, 0xFF]), .forbidden, "4294967295"),
    ]

    @Test("malformed publish frames", arguments: malformed)
    func malformedFrames(name: String, bytes: [UInt8], code: ErrorCode, id: String?) {
        expectFailure(Self.decode(bytes), code, id: id)
    }

    @Test("the topic limit comes from RequestLimits")
    func topicLimit() {
        let limits = RequestLimits(maxTopicBytes: 3)
        #expect(expectSuccess(Self.decode(Self.frame(topic: Array("abc".utf8)), limits: limits)) != nil)
        expectFailure(Self.decode(Self.frame(topic: Array("abcd".utf8)), limits: limits), .invalidTopic, id: nil)
    }

    /// (flags, id bytes, expected retain, expected id JSON)
    static let flagCases: [(UInt8, [UInt8], Bool, String?)] = [
        (0x00, [], false, nil),
        (0x01, [], true, nil),
        (0x02, [0, 0, 0, 0], false, "0"),
        (0x03, [0, 0, 0, 42], true, "42"),
        (0x02, [0x01, 0x02, 0x03, 0x04], false, "16909060"),
        (0x02, [0xFF, 0xFF, 0xFF, 0xFF], false, "4294967295"),
    ]

    @Test("flags: retain and ack (the id is a uint32)", arguments: flagCases, [[], [0x00], [0x01, 0x02, 0xFF], Array(0...255)] as [[UInt8]])
    func flags(flagCase: (UInt8, [UInt8], Bool, String?), payload: [UInt8]) throws {
        let (flags, id, expectedRetain, expectedID) = flagCase
        let bytes = Self.frame(flags: flags, topic: Array("sensors/é".utf8), id: id, payload: payload)
        let request = try #require(expectSuccess(Self.decode(bytes)))
        #expect(request.id?.json == expectedID)
        if let expectedID { #expect(request.id == RequestID(UInt32(expectedID)!)) }
        guard case .publish(let topic, let decodedPayload, let isBinary, let retain) = request.request else {
            Issue.record("expected publish")
            return
        }
        #expect(topic == "sensors/é")
        #expect(isBinary)
        #expect(retain == expectedRetain)
        #expect(decodedPayload.bytes == payload)
    }

    @Test("a payload that looks like JSON or another header is opaque")
    func opaquePayload() throws {
        let inner = Self.frame(topic: Array("x".utf8))
        let request = try #require(expectSuccess(Self.decode(Self.frame(topic: Array("t".utf8), payload: inner + Array("{}".utf8)))))
        guard case .publish(_, let payload, _, _) = request.request else {
            Issue.record("expected publish")
            return
        }
        #expect(payload.bytes == inner + Array("{}".utf8))
    }

    @Test("decodePublish honours the frame's reader index")
    func readerIndex() throws {
        var buffer = ByteBuffer(bytes: [0xEE, 0xEE] + Self.frame(flags: 0x02, topic: Array("t".utf8), id: [0, 0, 0, 5], payload: [1, 2]))
        buffer.moveReaderIndex(forwardBy: 2)
        let request = try #require(expectSuccess(BinaryCodec.decodePublish(buffer)))
        #expect(request.id?.json == "5")
        guard case .publish(_, let payload, _, _) = request.request else {
            Issue.record("expected publish")
            return
        }
        #expect(payload.bytes == [1, 2])
    }

    @Test("encodePublish writes the documented layout")
    func encodePublishLayout() {
        var buffer = ByteBuffer()
        BinaryCodec.encodePublish(topic: "ab", payload: ByteBuffer(bytes: [9, 8]), retain: true, ackID: 0x0102_0304, into: &buffer)
        #expect(buffer.bytes == [0x01, 0x03, 0x00, 0x02, 0x61, 0x62, 0x01, 0x02, 0x03, 0x04, 0x09, 0x08])
        var plain = ByteBuffer()
        BinaryCodec.encodePublish(topic: "é", payload: ByteBuffer(), retain: false, ackID: nil, into: &plain)
        #expect(plain.bytes == [0x01, 0x00, 0x00, 0x02, 0xC3, 0xA9])
    }

    @Test(
        "encodePublish → decodePublish round-trip",
        arguments: ["a", "a//b", "sensors/kitchen/temp", "κόσμε/😀", String(repeating: "é", count: Topic.defaultMaxBytes / 2)],
        [(false, nil), (true, nil), (false, 0), (true, 77), (true, UInt32.max)] as [(Bool, UInt32?)])
    func publishRoundTrip(topic: String, options: (Bool, UInt32?)) throws {
        let (retain, ackID) = options
        for payload in [[], [0], Array("hello".utf8), Array(repeating: 0xFF, count: 70_000)] as [[UInt8]] {
            var buffer = ByteBuffer()
            BinaryCodec.encodePublish(topic: topic, payload: ByteBuffer(bytes: payload), retain: retain, ackID: ackID, into: &buffer)
            let request = try #require(expectSuccess(BinaryCodec.decodePublish(buffer)))
            #expect(request.id == ackID.map { RequestID($0) })
            guard case .publish(let decodedTopic, let decodedPayload, let isBinary, let decodedRetain) = request.request else {
                Issue.record("expected publish")
                return
            }
            #expect(decodedTopic == topic)
            #expect(decodedPayload.bytes == payload)
            #expect(isBinary)
            #expect(decodedRetain == retain)
        }
    }

    @Test("encodeMessage writes the documented layout")
    func encodeMessageLayout() {
        var buffer = ByteBuffer()
        BinaryCodec.encodeMessage(topic: "ab", payload: ByteBuffer(bytes: [7]), offset: 0x0102_0304_0506_0708, replay: true, into: &buffer)
        #expect(buffer.bytes == [0x02, 0x03, 0x00, 0x02, 0x61, 0x62, 1, 2, 3, 4, 5, 6, 7, 8, 0x07])
        var live = ByteBuffer()
        BinaryCodec.encodeMessage(topic: "ab", payload: ByteBuffer(), offset: nil, replay: false, into: &live)
        #expect(live.bytes == [0x02, 0x00, 0x00, 0x02, 0x61, 0x62])
        var replayOnly = ByteBuffer()
        BinaryCodec.encodeMessage(topic: "a", payload: ByteBuffer(bytes: [1]), offset: nil, replay: true, into: &replayOnly)
        #expect(replayOnly.bytes == [0x02, 0x02, 0x00, 0x01, 0x61, 0x01])
    }

    @Test(
        "encodeMessage → decodeMessage round-trip",
        arguments: ["a", "$sys/stats", "κόσμε/😀"], [(nil, false), (nil, true), (0, false), (1, true), (UInt64.max, false)] as [(UInt64?, Bool)])
    func messageRoundTrip(topic: String, options: (UInt64?, Bool)) throws {
        let (offset, replay) = options
        for payload in [[], [0x02, 0x01, 0x00], Array(0...255)] as [[UInt8]] {
            var buffer = ByteBuffer()
            BinaryCodec.encodeMessage(topic: topic, payload: ByteBuffer(bytes: payload), offset: offset, replay: replay, into: &buffer)
            let delivery = try BinaryCodec.decodeMessage(buffer)
            #expect(delivery == Delivery(topic: topic, payload: ByteBuffer(bytes: payload), isBinary: true, offset: offset, replay: replay))
        }
    }

    @Test(
        "decodeMessage refuses malformed frames",
        arguments: [
            [], [0x02], [0x02, 0x00], [0x02, 0x00, 0x00], [0x01, 0x00, 0x00, 0x01, 0x61], [0x00, 0x00, 0x00, 0x00],
            [0x02, 0x00, 0x00, 0x02, 0x61], [0x02, 0x01, 0x00, 0x01, 0x61], [0x02, 0x01, 0x00, 0x01, 0x61, 0, 0, 0, 0, 0, 0, 0],
        ] as [[UInt8]])
    func decodeMessageErrors(bytes: [UInt8]) {
        #expect(throws: ServerMessageError.self) { try BinaryCodec.decodeMessage(ByteBuffer(bytes: bytes)) }
    }
}
