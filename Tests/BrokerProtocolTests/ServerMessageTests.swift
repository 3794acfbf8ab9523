import Foundation
import NIOCore
import Testing

@testable import BrokerProtocol

@Suite("Server messages and JSON writing")
struct ServerMessageTests {
    static func encode(_ body: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var buffer = ByteBuffer()
        body(&buffer)
        return buffer
    }

    /// Checks the text is valid JSON with Foundation and returns it as a dictionary.
    static func foundationObject(_ buffer: ByteBuffer, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(buffer.bytes))
        return try #require(object as? [String: Any], sourceLocation: sourceLocation)
    }

    static let awkward = "q\"b\\s/\n\r\t\u{0}\u{1F}\u{7F} é😀"

    @Test("welcome round-trips", arguments: [
        Welcome(server: "broker/1.0", session: "s-1", maxMessageBytes: 1_048_576, epoch: "e1"),
        Welcome(protocolVersion: 7, server: awkward, session: awkward, maxMessageBytes: 0, epoch: awkward),
        Welcome(server: "", session: "", maxMessageBytes: Int.max, epoch: ""),
    ])
    func welcome(_ welcome: Welcome) throws {
        let buffer = Self.encode { ServerMessageEncoder.welcome(welcome, into: &$0) }
        guard case .welcome(let parsed) = try ServerMessage.parseText(buffer) else {
            Issue.record("not a welcome: \(buffer.text)")
            return
        }
        #expect(parsed == welcome)
        let object = try Self.foundationObject(buffer)
        #expect(object["op"] as? String == "welcome")
        #expect((object["protocol"] as? NSNumber)?.intValue == welcome.protocolVersion)
        #expect(object["server"] as? String == welcome.server)
        #expect(object["session"] as? String == welcome.session)
        #expect(object["epoch"] as? String == welcome.epoch)
        #expect((object["maxMessageBytes"] as? NSNumber)?.int64Value == Int64(welcome.maxMessageBytes))
    }

    @Test("welcome has exactly the fields of PROTOCOL.md")
    func welcomeLayout() {
        let buffer = Self.encode {
            ServerMessageEncoder.welcome(
                Welcome(server: "b/1", session: "s", maxMessageBytes: 65536, epoch: "e"), into: &$0)
        }
        #expect(buffer.text == #"{"op":"welcome","protocol":1,"server":"b/1","session":"s","maxMessageBytes":65536,"epoch":"e"}"#)
    }

    static let ids: [RequestID?] = [nil, RequestID(42), RequestID(json: "1.5e3"), RequestID(string: "a"), RequestID(string: awkward)]

    @Test("subscribed round-trips", arguments: ids, [nil, true, false] as [Bool?])
    func subscribed(id: RequestID?, recovered: Bool?) throws {
        let buffer = Self.encode { ServerMessageEncoder.subscribed(topic: "a/+/" + Self.awkward, id: id, recovered: recovered, into: &$0) }
        guard case .subscribed(let topic, let parsedID, let parsedRecovered) = try ServerMessage.parseText(buffer) else {
            Issue.record("not subscribed: \(buffer.text)")
            return
        }
        #expect(topic == "a/+/" + Self.awkward)
        #expect(parsedID == id)
        #expect(parsedRecovered == recovered)
        let object = try Self.foundationObject(buffer)
        #expect(object["op"] as? String == "subscribed")
        #expect(object["topic"] as? String == "a/+/" + Self.awkward)
        #expect((object["recovered"] != nil) == (recovered != nil))
        if let recovered { #expect(object["recovered"] as? Bool == recovered) }
        #expect((object["id"] != nil) == (id != nil))
    }

    @Test("unsubscribed round-trips", arguments: ids)
    func unsubscribed(id: RequestID?) throws {
        let buffer = Self.encode { ServerMessageEncoder.unsubscribed(topic: "#", id: id, into: &$0) }
        guard case .unsubscribed(let topic, let parsedID) = try ServerMessage.parseText(buffer) else {
            Issue.record("not unsubscribed: \(buffer.text)")
            return
        }
        #expect(topic == "#")
        #expect(parsedID == id)
        let object = try Self.foundationObject(buffer)
        #expect(object["op"] as? String == "unsubscribed")
    }

    @Test("ack round-trips", arguments: ids.compactMap { $0 }, [nil, 0, 1, UInt64.max] as [UInt64?])
    func ack(id: RequestID, offset: UInt64?) throws {
        let buffer = Self.encode { ServerMessageEncoder.ack(id: id, offset: offset, into: &$0) }
        guard case .ack(let parsedID, let parsedOffset) = try ServerMessage.parseText(buffer) else {
            Issue.record("not an ack: \(buffer.text)")
            return
        }
        #expect(parsedID == id)
        #expect(parsedOffset == offset)
        let object = try Self.foundationObject(buffer)
        #expect(object["op"] as? String == "ack")
        #expect((object["offset"] != nil) == (offset != nil))
    }

    @Test("the id goes out as the same JSON value it came in as")
    func idIsVerbatim() throws {
        let request = try #require(expectSuccess(parse(#"{"op":"publish","topic":"t","data":1,"id":42}"#)))
        let id = try #require(request.id)
        let ack = Self.encode { ServerMessageEncoder.ack(id: id, offset: 9, into: &$0) }
        #expect(ack.text == #"{"op":"ack","id":42,"offset":9}"#)
        let object = try Self.foundationObject(ack)
        let number = try #require(object["id"] as? NSNumber)
        #expect(number.intValue == 42)
        #expect(!(object["id"] is String))
        let stringRequest = try #require(expectSuccess(parse(#"{"op":"ping","id":"42"}"#)))
        let stringID = try #require(stringRequest.id)
        #expect(Self.encode { ServerMessageEncoder.pong(id: stringID, into: &$0) }.text == #"{"op":"pong","id":"42"}"#)
        let floatRequest = try #require(expectSuccess(parse(#"{"op":"ping","id":1.5e3}"#)))
        let floatID = try #require(floatRequest.id)
        #expect(Self.encode { ServerMessageEncoder.pong(id: floatID, into: &$0) }.text == #"{"op":"pong","id":1.5e3}"#)
    }

    @Test("pong round-trips", arguments: ids)
    func pong(id: RequestID?) throws {
        let buffer = Self.encode { ServerMessageEncoder.pong(id: id, into: &$0) }
        guard case .pong(let parsedID) = try ServerMessage.parseText(buffer) else {
            Issue.record("not a pong: \(buffer.text)")
            return
        }
        #expect(parsedID == id)
        _ = try Self.foundationObject(buffer)
    }

    @Test("error round-trips", arguments: ErrorCode.allCases, ids)
    func error(code: ErrorCode, id: RequestID?) throws {
        let error = RequestError(code, "bad: " + Self.awkward, id: id)
        let buffer = Self.encode { ServerMessageEncoder.error(error, into: &$0) }
        guard case .error(let parsedCode, let message, let parsedID) = try ServerMessage.parseText(buffer) else {
            Issue.record("not an error: \(buffer.text)")
            return
        }
        #expect(parsedCode == code.rawValue)
        #expect(message == "bad: " + Self.awkward)
        #expect(parsedID == id)
        let object = try Self.foundationObject(buffer)
        #expect(object["code"] as? String == code.rawValue)
        #expect(object["message"] as? String == "bad: " + Self.awkward)
    }

    @Test("error codes are the ones of PROTOCOL.md")
    func errorCodes() {
        #expect(
            Set(ErrorCode.allCases.map(\.rawValue)) == [
                "bad_request", "unknown_op", "invalid_topic", "forbidden", "too_large", "rate_limited",
                "too_many_subscriptions", "internal", "unauthorized", "token_expired",
            ])
    }

    @Test(
        "message round-trips", arguments: ["null", "42", "\"s\"", "{ \"a\" : [1, 2.5e-3, \"\\u00e9\"] }", "[[],{}]"],
        [(nil, false), (nil, true), (1, false), (UInt64.max, true)] as [(UInt64?, Bool)])
    func message(data: String, flags: (UInt64?, Bool)) throws {
        let (offset, replay) = flags
        let buffer = Self.encode {
            ServerMessageEncoder.message(topic: "a/é", data: ByteBuffer(string: data), offset: offset, replay: replay, into: &$0)
        }
        guard case .message(let delivery) = try ServerMessage.parseText(buffer) else {
            Issue.record("not a message: \(buffer.text)")
            return
        }
        #expect(delivery == Delivery(topic: "a/é", payload: ByteBuffer(string: data), isBinary: false, offset: offset, replay: replay))
        let object = try Self.foundationObject(buffer)
        #expect(object["op"] as? String == "message")
        #expect(object["topic"] as? String == "a/é")
        #expect(object.keys.contains("data"))
        #expect((object["offset"] != nil) == (offset != nil))
        #expect((object["replay"] != nil) == replay)
    }

    @Test("message data is written from the reader index of its buffer")
    func messageDataSlice() throws {
        var data = ByteBuffer(string: "xxx[1,2]")
        data.moveReaderIndex(forwardBy: 3)
        let buffer = Self.encode { ServerMessageEncoder.message(topic: "t", data: data, offset: 5, replay: false, into: &$0) }
        #expect(buffer.text == #"{"op":"message","topic":"t","data":[1,2],"offset":5}"#)
        #expect(data.readableBytes == 5)  // the caller's buffer is untouched
    }

    @Test("parseText refuses what is not a broker message")
    func parseErrors() {
        for text in [
            "", "[]", "{", "{}", #"{"op":1}"#, #"{"op":"nope"}"#, #"{"op":"ack"}"#, #"{"op":"ack","id":true}"#,
            #"{"op":"message","data":1}"#, #"{"op":"message","topic":"t"}"#, #"{"op":"welcome"}"#,
            #"{"op":"welcome","protocol":"1"}"#,
        ] {
            #expect(throws: ServerMessageError.self, "\(text)") { try ServerMessage.parseText(ByteBuffer(string: text)) }
        }
    }

    @Test("a welcome with numbers beyond Int does not crash the client")
    func welcomeHugeNumbers() {
        let huge = #"{"op":"welcome","protocol":18446744073709551615,"server":"s","session":"x","maxMessageBytes":18446744073709551615,"epoch":"e"}"#
        // A protocol version nobody speaks: refused rather than trapping.
        #expect(throws: ServerMessageError.self) { try ServerMessage.parseText(ByteBuffer(string: huge)) }
        let bigLimit = #"{"op":"welcome","protocol":1,"server":"s","session":"x","maxMessageBytes":18446744073709551615,"epoch":"e"}"#
        guard case .welcome(let welcome) = try? ServerMessage.parseText(ByteBuffer(string: bigLimit)) else {
            Issue.record("welcome not parsed")
            return
        }
        #expect(welcome.maxMessageBytes == Int.max)
    }

    // MARK: - JSON string escaping

    @Test(
        "writeJSONString",
        arguments: [
            ("", #""""#), ("a", #""a""#), ("\"", #""\"""#), ("\\", #""\\""#), ("/", #""/""#), ("\n", #""\n""#),
            ("\r", #""\r""#), ("\t", #""\t""#), ("\u{0}", #""\u0000""#), ("\u{1}", #""\u0001""#), ("\u{8}", #""\u0008""#),
            ("\u{C}", #""\u000c""#), ("\u{1B}", #""\u001b""#), ("\u{1F}", #""\u001f""#), ("\u{7F}", "\"\u{7F}\""),
            ("é😀", "\"é😀\""), ("\u{2028}", "\"\u{2028}\""), ("a\"b\\c\nd", #""a\"b\\c\nd""#),
            ("ab\u{0}cd\u{1}", #""ab\u0000cd\u0001""#),
        ])
    func writeJSONString(input: String, expected: String) throws {
        var buffer = ByteBuffer()
        let written = buffer.writeJSONString(input)
        #expect(buffer.text == expected)
        #expect(written == buffer.readableBytes)
        let decoded = try JSONSerialization.jsonObject(with: Data(buffer.bytes), options: [.fragmentsAllowed]) as? String
        #expect(decoded == input)
    }

    @Test("writeJSONString round-trips every ASCII character and then some, through the broker's own scanner")
    func writeJSONStringRoundTrip() throws {
        var scalars = (0..<0x80).map { Unicode.Scalar(UInt8($0)) }
        scalars += ["\u{80}", "\u{7FF}", "\u{800}", "\u{D7FF}", "\u{E000}", "\u{FFFF}", "\u{10000}", "\u{10FFFF}"]
        var all = String.UnicodeScalarView()
        all.append(contentsOf: scalars)
        for input in [String(all)] + scalars.map({ String($0) }) {
            var buffer = ByteBuffer()
            buffer.writeJSONString(input)
            let bytes = buffer.bytes
            try bytes.withUnsafeBytes { raw in
                var scanner = JSONScanner(raw)
                let value = try scanner.scanValue()
                try scanner.expectEnd()
                #expect(value.kind == .string)
                #expect(JSONScanner.decodeString(raw, value.range) == input)
            }
            let decoded = try JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) as? String
            #expect(decoded == input)
        }
    }

    @Test("writeDecimal", arguments: [0, 1, 9, 10, 11, 99, 100, 101, 1_000_000, 4_294_967_295, UInt64(Int64.max), UInt64.max - 1, UInt64.max])
    func writeDecimal(value: UInt64) {
        var buffer = ByteBuffer(string: "x")
        let written = buffer.writeDecimal(value)
        #expect(buffer.text == "x" + String(value))
        #expect(written == String(value).utf8.count)
    }
}
