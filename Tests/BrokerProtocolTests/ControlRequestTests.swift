import NIOCore
import Testing

@testable import BrokerProtocol

@Suite("ControlRequest.parseText")
struct ControlRequestTests {
    // MARK: - Not JSON

    static let notJSONCases: [String] = [
        "", " ", "\n", "garbage", "ping", "op=ping", "{", "}", "{{}}", "{\"op\":\"ping\"", "{\"op\":\"ping\",}",
        "{\"op\":\"ping\"}x", "{\"op\":\"ping\"} {}", "{\"op\":\"ping\"}}", "{\"op\":\"ping\"};", "{,}", "{\"op\"}", "{\"op\":}",
        "{\"op\" \"ping\"}", "{\"op\":\"ping\" \"id\":1}", "{\"op\":\"ping\",,\"id\":1}", "{op:\"ping\"}", "{'op':'ping'}",
        "{\"op\":'ping'}", "{\"op\":\"pi", "{\"op\":\"ping", "{\"op\":\"ping\\\"}", "{\"op\":\"\\x\"}", "{\"op\":\"\\u12\"}",
        "{\"op\":\"\\u12G4\"}", "{\"op\":\"a\tb\"}", "{\"op\":\"a\nb\"}", "{\"op\":\"a\u{1}b\"}", "{\"op\":\"ping\",\"id\":01}",
        "{\"op\":\"ping\",\"id\":00}", "{\"op\":\"ping\",\"id\":-01}", "{\"op\":\"ping\",\"id\":1.}",
        "{\"op\":\"ping\",\"id\":-}", "{\"op\":\"ping\",\"id\":.5}", "{\"op\":\"ping\",\"id\":-.5}", "{\"op\":\"ping\",\"id\":+1}",
        "{\"op\":\"ping\",\"id\":1e}", "{\"op\":\"ping\",\"id\":1e+}", "{\"op\":\"ping\",\"id\":0x10}",
        "{\"op\":\"ping\",\"id\":NaN}", "{\"op\":\"ping\",\"id\":Infinity}", "{\"op\":\"ping\",\"id\":tru}",
        "{\"op\":\"ping\",\"id\":True}", "{\"op\":\"ping\",\"id\":nul}", "{\"op\":\"publish\",\"topic\":\"t\",\"data\":[1,2}",
        "{\"op\":\"publish\",\"topic\":\"t\",\"data\":[1,]}", "{\"op\":\"publish\",\"topic\":\"t\",\"data\":{\"a\":1,}}",
        "{\"op\":\"publish\",\"topic\":\"t\",\"data\":{\"a\"}}", "{\"op\":\"ping\"} // comment", "/* c */ {\"op\":\"ping\"}",
        "[1,]", "[", "\"unterminated", "01", "1.", "-", ".5", "{\"op\":\"ping\"}\u{0}",
    ]

    @Test("not JSON → bad_request without an id", arguments: notJSONCases)
    func notJSON(text: String) {
        expectFailure(parse(text), .badRequest, id: nil)
    }

    @Test("invalid UTF-8 inside a string → bad_request")
    func invalidUTF8() {
        let prefix = Array(#"{"op":"ping","x":""#.utf8)
        for bad: [UInt8] in [[0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xFF], [0xC3]] {
            expectFailure(parse(bytes: prefix + bad + Array(#""}"#.utf8)), .badRequest, id: nil)
        }
    }

    // MARK: - Valid JSON that is not an object

    @Test(
        "valid JSON that is not an object → bad_request",
        arguments: ["[]", "[1,2]", "[{\"op\":\"ping\"}]", "\"op\"", "\"{\\\"op\\\":\\\"ping\\\"}\"", "42", "-1.5e3", "true",
            "false", "null", "  [ ]  ", "\n\"ping\"\n"])
    func notAnObject(text: String) throws {
        expectFailure(parse(text), .badRequest, id: nil)
        let error = try #require(parse(text).failureValue)
        #expect(error.message.contains("object"))
    }

    // MARK: - op

    @Test(
        "missing or mistyped op → bad_request (with the id when readable)",
        arguments: [
            ("{}", nil), ("{\"id\":1}", "1"), ("{\"id\":\"x\",\"topic\":\"a\"}", "\"x\""), ("{\"op\":1}", nil),
            ("{\"op\":1,\"id\":2}", "2"), ("{\"op\":null,\"id\":\"n\"}", "\"n\""), ("{\"op\":true}", nil),
            ("{\"op\":[\"ping\"]}", nil), ("{\"op\":{\"name\":\"ping\"}}", nil), ("{\"OP\":\"ping\"}", nil),
        ] as [(String, String?)])
    func missingOp(text: String, id: String?) {
        expectFailure(parse(text), .badRequest, id: id)
    }

    @Test(
        "unknown op → unknown_op",
        arguments: [
            ("{\"op\":\"pong\"}", nil), ("{\"op\":\"PING\"}", nil), ("{\"op\":\"\"}", nil), ("{\"op\":\"ping \"}", nil),
            ("{\"op\":\"welcome\",\"id\":42}", "42"), ("{\"id\":\"q\",\"op\":\"sub\"}", "\"q\""),
            ("{\"op\":\"message\",\"topic\":\"a\",\"data\":1,\"id\":7}", "7"),
        ] as [(String, String?)])
    func unknownOp(text: String, id: String?) {
        expectFailure(parse(text), .unknownOp, id: id)
    }

    @Test("an escaped op is decoded before it is compared")
    func escapedOp() throws {
        let request = try #require(expectSuccess(parse(#"{"op":"p\u0069ng","id":1}"#)))
        guard case .ping = request.request else {
            Issue.record("expected ping")
            return
        }
        let escapedKey = try #require(expectSuccess(parse(#"{"\u006fp":"ping"}"#)))
        guard case .ping = escapedKey.request else {
            Issue.record("expected ping")
            return
        }
    }

    // MARK: - subscribe / unsubscribe

    @Test(
        "subscribe/unsubscribe with a missing or mistyped topic → bad_request",
        arguments: ["subscribe", "unsubscribe"], [
            ("", nil), (",\"topic\":1", nil), (",\"topic\":null", nil), (",\"topic\":[\"a\"]", nil),
            (",\"topic\":{\"a\":1}", nil), (",\"topic\":true", nil), (",\"id\":5", "5"), (",\"topic\":3,\"id\":\"s\"", "\"s\""),
        ] as [(String, String?)])
    func subscribeBadTopic(op: String, fields: (String, String?)) {
        expectFailure(parse("{\"op\":\"\(op)\"\(fields.0)}"), .badRequest, id: fields.1)
    }

    static let invalidFilters: [String] = [
        "", "a#", "a/#/b", "#/a", "+a", "a/b+", "a+/b", "##", "a\\u0000b", "\\u0000",
        String(repeating: "a", count: Topic.defaultMaxBytes + 1), String(repeating: "é", count: Topic.defaultMaxBytes / 2) + "x",
        String(repeating: "\\u00e9", count: Topic.defaultMaxBytes / 2) + "x",
    ]

    @Test("subscribe/unsubscribe to an invalid filter → invalid_topic", arguments: ["subscribe", "unsubscribe"], invalidFilters)
    func invalidFilter(op: String, filter: String) {
        expectFailure(parse("{\"op\":\"\(op)\",\"topic\":\"\(filter)\"}"), .invalidTopic, id: nil)
        expectFailure(parse("{\"op\":\"\(op)\",\"topic\":\"\(filter)\",\"id\":9}"), .invalidTopic, id: "9")
    }

    @Test("the filter length limit comes from RequestLimits")
    func filterLimit() {
        let limits = RequestLimits(maxTopicBytes: 4)
        #expect(expectSuccess(parse(#"{"op":"subscribe","topic":"ab/#"}"#, limits: limits)) != nil)
        expectFailure(parse(#"{"op":"subscribe","topic":"abc/#"}"#, limits: limits), .invalidTopic, id: nil)
        expectFailure(parse(#"{"op":"publish","topic":"abcde","data":1}"#, limits: limits), .invalidTopic, id: nil)
        #expect(expectSuccess(parse(#"{"op":"publish","topic":"abcd","data":1}"#, limits: limits)) != nil)
    }

    /// Too deep, or with a control character (written as a JSON escape, decoded before the
    /// check): `invalid_topic` with the request's id, on every request that names a topic.
    static let abusiveTopics: [String] = [
        String(repeating: "a/", count: Topic.defaultMaxLevels) + "a", "a\\nb", "a\\u001b[2J", "a\\u007f", "a\\tb",
    ]

    @Test("too many levels or a control character → invalid_topic", arguments: abusiveTopics)
    func abusiveTopic(topic: String) {
        for op in ["subscribe", "unsubscribe"] {
            expectFailure(parse("{\"op\":\"\(op)\",\"topic\":\"\(topic)\",\"id\":7}"), .invalidTopic, id: "7")
        }
        expectFailure(parse("{\"op\":\"publish\",\"topic\":\"\(topic)\",\"data\":1,\"id\":8}"), .invalidTopic, id: "8")
    }

    @Test("the level limit comes from RequestLimits")
    func levelLimit() {
        let limits = RequestLimits(maxTopicLevels: 2)
        #expect(expectSuccess(parse(#"{"op":"subscribe","topic":"a/#"}"#, limits: limits)) != nil)
        expectFailure(parse(#"{"op":"subscribe","topic":"a/b/#"}"#, limits: limits), .invalidTopic, id: nil)
        expectFailure(parse(#"{"op":"unsubscribe","topic":"a/+/c"}"#, limits: limits), .invalidTopic, id: nil)
        expectFailure(parse(#"{"op":"publish","topic":"a/b/c","data":1}"#, limits: limits), .invalidTopic, id: nil)
        #expect(expectSuccess(parse(#"{"op":"publish","topic":"a/b","data":1}"#, limits: limits)) != nil)
    }

    @Test(
        "history must be an integer ≥ 0",
        arguments: [
            "-1", "1.5", "2.0", "1e2", "\"1\"", "true", "null", "[1]", "{}", "-0", "18446744073709551616",
            "100000000000000000000000000000",
        ])
    func badHistory(value: String) {
        expectFailure(parse("{\"op\":\"subscribe\",\"topic\":\"a/#\",\"history\":\(value),\"id\":\"h\"}"), .badRequest, id: "\"h\"")
    }

    @Test("since must be an integer ≥ 0", arguments: ["-1", "1.5", "\"5\"", "null", "false", "18446744073709551616"])
    func badSince(value: String) {
        expectFailure(parse("{\"op\":\"subscribe\",\"topic\":\"a\",\"since\":\(value)}"), .badRequest, id: nil)
    }

    @Test("epoch must be a string", arguments: ["1", "null", "true", "[\"e\"]", "{}"])
    func badEpoch(value: String) {
        expectFailure(parse("{\"op\":\"subscribe\",\"topic\":\"a\",\"since\":3,\"epoch\":\(value),\"id\":1}"), .badRequest, id: "1")
    }

    @Test(
        "valid subscribe requests",
        arguments: [
            (#"{"op":"subscribe","topic":"a/#"}"#, SubscribeRequest(filter: "a/#")),
            (#"{"op":"subscribe","topic":"+","history":0}"#, SubscribeRequest(filter: "+", history: 0)),
            (#"{"op":"subscribe","topic":"a","history":25}"#, SubscribeRequest(filter: "a", history: 25)),
            (
                #"{"op":"subscribe","topic":"a","history":18446744073709551615}"#,
                SubscribeRequest(filter: "a", history: Int.max)
            ),
            (#"{"op":"subscribe","topic":"a","since":0}"#, SubscribeRequest(filter: "a", since: 0)),
            (
                #"{"op":"subscribe","topic":"a","since":18446744073709551615}"#,
                SubscribeRequest(filter: "a", since: UInt64.max)
            ),
            (
                #"{"op":"subscribe","topic":"a","since":12,"epoch":"e-1","history":3}"#,
                SubscribeRequest(filter: "a", history: 3, since: 12, epoch: "e-1")
            ),
            (#"{"op":"subscribe","topic":"a","epoch":"\u00e9"}"#, SubscribeRequest(filter: "a", epoch: "é")),
            (#"{"op":"subscribe","topic":"sensors\/+\/temp"}"#, SubscribeRequest(filter: "sensors/+/temp")),
            (#"{"op":"subscribe","topic":"$sys/#"}"#, SubscribeRequest(filter: "$sys/#")),
            (#"{"op":"subscribe","topic":"a//b"}"#, SubscribeRequest(filter: "a//b")),
            (#"{"op":"subscribe","topic":"\u002b/\u0023"}"#, SubscribeRequest(filter: "+/#")),
            (
                #"  { "topic" : "caf\u00e9/#" , "history" : 2 , "op" : "subscribe" }  "#,
                SubscribeRequest(filter: "café/#", history: 2)
            ),
        ])
    func validSubscribe(text: String, expected: SubscribeRequest) throws {
        let request = try #require(expectSuccess(parse(text)))
        #expect(request.id == nil)
        guard case .subscribe(let subscribe) = request.request else {
            Issue.record("expected subscribe, got \(request.request)")
            return
        }
        #expect(subscribe == expected)
    }

    @Test("valid unsubscribe")
    func validUnsubscribe() throws {
        let request = try #require(expectSuccess(parse(#"{"op":"unsubscribe","topic":"a\/+","id":"u1"}"#)))
        #expect(request.id?.json == "\"u1\"")
        guard case .unsubscribe(let filter) = request.request else {
            Issue.record("expected unsubscribe")
            return
        }
        #expect(filter == "a/+")
    }

    // MARK: - publish

    @Test(
        "publish errors",
        arguments: [
            (#"{"op":"publish","topic":"a"}"#, ErrorCode.badRequest, nil),
            (#"{"op":"publish","topic":"a","id":3}"#, .badRequest, "3"),
            (#"{"op":"publish","data":1}"#, .badRequest, nil),
            (#"{"op":"publish","topic":5,"data":1}"#, .badRequest, nil),
            (#"{"op":"publish","topic":null,"data":1,"id":"p"}"#, .badRequest, #""p""#),
            (#"{"op":"publish","topic":"$x","data":1}"#, .forbidden, nil),
            (#"{"op":"publish","topic":"$sys/stats","data":1,"id":7}"#, .forbidden, "7"),
            (#"{"op":"publish","topic":"\u0024sys","data":1}"#, .forbidden, nil),
            (#"{"op":"publish","topic":"a/+","data":1}"#, .invalidTopic, nil),
            (##"{"op":"publish","topic":"#","data":1,"id":8}"##, .invalidTopic, "8"),
            (#"{"op":"publish","topic":"a/#","data":1}"#, .invalidTopic, nil),
            (#"{"op":"publish","topic":"a\u002bb","data":1}"#, .invalidTopic, nil),
            (#"{"op":"publish","topic":"a\u0000","data":1}"#, .invalidTopic, nil),
            (#"{"op":"publish","topic":"","data":1}"#, .invalidTopic, nil),
            (#"{"op":"publish","topic":"a","data":1,"retain":"true"}"#, .badRequest, nil),
            (#"{"op":"publish","topic":"a","data":1,"retain":1}"#, .badRequest, nil),
            (#"{"op":"publish","topic":"a","data":1,"retain":null,"id":1}"#, .badRequest, "1"),
            (#"{"op":"publish","topic":"a","data":1,"retain":[true]}"#, .badRequest, nil),
        ] as [(String, ErrorCode, String?)])
    func publishErrors(text: String, code: ErrorCode, id: String?) {
        expectFailure(parse(text), code, id: id)
    }

    @Test("publish to a name at the length limit is accepted, one byte more is refused")
    func publishLength() {
        let atLimit = String(repeating: "é", count: Topic.defaultMaxBytes / 2)
        #expect(expectSuccess(parse("{\"op\":\"publish\",\"topic\":\"\(atLimit)\",\"data\":1}")) != nil)
        expectFailure(parse("{\"op\":\"publish\",\"topic\":\"\(atLimit)a\",\"data\":1}"), .invalidTopic, id: nil)
    }

    static let dataValues: [String] = [
        "null", "true", "false", "0", "-0", "42", "1.5e3", "-1.5E-300", "123456789012345678901234567890", "1e400", "\"\"",
        "\"text\"", "\"\\u00e9\\ud83d\\ude00\"", "\"κόσμε 😀\"", "\"a\\\"b\\\\c\\/d\\n\"", "{}", "[]",
        "{ \"a\" : 1 , \"b\" : [ 1 , 2 ] }", "{\"a\":{\"b\":{\"c\":[true,false,null,{\"x\":\"y\"}]}}}", "[[[]],[{}],[[1,[2,[3]]]]]",
        "[\n\t1,\r\n 2 ]", "{\"op\":\"ping\",\"topic\":\"$sys\",\"data\":null}",
        String(repeating: "[", count: JSONScanner.maxDepth - 1) + String(repeating: "]", count: JSONScanner.maxDepth - 1),
    ]

    @Test("publish keeps data byte for byte", arguments: dataValues)
    func publishData(data: String) throws {
        for text in [
            "{\"op\":\"publish\",\"topic\":\"t\",\"data\":\(data)}",
            "{ \"data\" :  \(data)  , \"op\" : \"publish\" , \"topic\" : \"t\" , \"retain\" : true }",
            "\n{\"id\":1,\"data\":\(data),\"topic\":\"t\",\"op\":\"publish\"}\n",
        ] {
            let request = try #require(expectSuccess(parse(text)))
            guard case .publish(let topic, let payload, let isBinary, _) = request.request else {
                Issue.record("expected publish")
                return
            }
            #expect(topic == "t")
            #expect(!isBinary)
            #expect(payload.text == data)
        }
    }

    @Test("publish data is sliced relative to the frame's reader index")
    func publishReaderIndex() throws {
        var frame = ByteBuffer(string: "junk before{\"op\":\"publish\",\"topic\":\"t\",\"data\":[1, {\"a\":2}],\"id\":5}")
        frame.moveReaderIndex(forwardBy: "junk before".utf8.count)
        let request = try #require(expectSuccess(ControlRequest.parseText(frame)))
        #expect(request.id?.json == "5")
        guard case .publish(_, let payload, _, _) = request.request else {
            Issue.record("expected publish")
            return
        }
        #expect(payload.text == "[1, {\"a\":2}]")
    }

    @Test(
        "publish topic and retain",
        arguments: [
            (#"{"op":"publish","topic":"a/b","data":1}"#, "a/b", false),
            (#"{"op":"publish","topic":"a/b","data":1,"retain":false}"#, "a/b", false),
            (#"{"op":"publish","topic":"a/b","data":1,"retain":true}"#, "a/b", true),
            (#"{"op":"publish","topic":"a\/b","data":1}"#, "a/b", false),
            (#"{"op":"publish","topic":"caf\u00e9","data":1}"#, "café", false),
            (#"{"op":"publish","topic":"caf\u00C9","data":1}"#, "cafÉ", false),
            (#"{"op":"publish","topic":"\ud83d\ude00/x","data":1}"#, "😀/x", false),
            (#"{"op":"publish","topic":"q\"q","data":1}"#, "q\"q", false),
            (#"{"op":"publish","topic":"back\\slash","data":1}"#, "back\\slash", false),
            (#"{"op":"publish","topic":"\u0041/b","data":1}"#, "A/b", false),  // a tab is a control character: refused
            (#"{"op":"publish","topic":"a//b","data":1}"#, "a//b", false),
            (#"{"op":"publish","topic":"a/$sys","data":1}"#, "a/$sys", false),
            (#"{"op":"publish","topic":"κόσμε","data":1}"#, "κόσμε", false),
        ])
    func publishTopic(text: String, topic expected: String, retain expectedRetain: Bool) throws {
        let request = try #require(expectSuccess(parse(text)))
        guard case .publish(let topic, let payload, _, let retain) = request.request else {
            Issue.record("expected publish")
            return
        }
        #expect(topic == expected)
        #expect(retain == expectedRetain)
        #expect(payload.text == "1")
    }

    // MARK: - ping, ids, extras

    @Test(
        "the id comes back as the same JSON text",
        arguments: [
            "42", "0", "-7", "1.5e3", "1E+2", "-0.0", "12345678901234567890123", "\"a\"", "\"\"", "\"\\u00e9\"",
            "\"with \\\"quotes\\\"\"", "\"κόσμε\"",
        ])
    func idEcho(id: String) throws {
        for text in ["{\"op\":\"ping\",\"id\":\(id)}", "{ \"id\" :  \(id) ,\n\"op\":\"ping\" }"] {
            let request = try #require(expectSuccess(parse(text)))
            #expect(request.id?.json == id)
            guard case .ping = request.request else {
                Issue.record("expected ping")
                return
            }
        }
    }

    @Test("an id of the wrong type → bad_request", arguments: ["true", "false", "null", "{}", "{\"a\":1}", "[1]", "[]"])
    func badID(id: String) {
        for op in ["ping", "subscribe", "nope"] {
            expectFailure(parse("{\"op\":\"\(op)\",\"topic\":\"a\",\"id\":\(id)}"), .badRequest, id: nil)
        }
    }

    @Test("ping without an id")
    func pingWithoutID() throws {
        let request = try #require(expectSuccess(parse(#"{"op":"ping"}"#)))
        #expect(request.id == nil)
    }

    @Test("unknown extra fields are ignored")
    func extraFields() throws {
        let text = #"{"op":"ping","x":{"y":[1,2,{"z":null}]},"id":1,"extra":"v","version":2,"data":[]}"#
        let request = try #require(expectSuccess(parse(text)))
        #expect(request.id?.json == "1")
        guard case .ping = request.request else {
            Issue.record("expected ping")
            return
        }
        let subscribe = try #require(
            expectSuccess(parse(#"{"op":"subscribe","topic":"a","qos":2,"data":{"ignored":true},"retain":"no"}"#)))
        guard case .subscribe(let request) = subscribe.request else {
            Issue.record("expected subscribe")
            return
        }
        #expect(request == SubscribeRequest(filter: "a"))
    }

    @Test("deep nesting beyond maxDepth is refused without crashing")
    func deepNesting() {
        let max = JSONScanner.maxDepth
        // The request object itself is one level: data may nest maxDepth - 1 deep.
        let accepted = String(repeating: "[", count: max - 1) + String(repeating: "]", count: max - 1)
        #expect(expectSuccess(parse("{\"op\":\"publish\",\"topic\":\"t\",\"data\":\(accepted)}")) != nil)
        let refused = String(repeating: "[", count: max) + String(repeating: "]", count: max)
        expectFailure(parse("{\"op\":\"publish\",\"topic\":\"t\",\"data\":\(refused),\"id\":1}"), .badRequest, id: nil)
        let objects = String(repeating: "{\"a\":", count: max) + "1" + String(repeating: "}", count: max)
        expectFailure(parse("{\"op\":\"publish\",\"topic\":\"t\",\"data\":\(objects)}"), .badRequest, id: nil)
        let huge = String(repeating: "[", count: 300_000) + String(repeating: "]", count: 300_000)
        expectFailure(parse("{\"op\":\"publish\",\"topic\":\"t\",\"data\":\(huge)}"), .badRequest, id: nil)
        expectFailure(parse(huge), .badRequest, id: nil)
        expectFailure(parse(String(repeating: "{\"a\":", count: 300_000)), .badRequest, id: nil)
    }

    @Test("RequestID initializers produce JSON text")
    func requestIDs() {
        #expect(RequestID(UInt32(42)).json == "42")
        #expect(RequestID(UInt32.max).json == "4294967295")
        #expect(RequestID(-3).json == "-3")
        #expect(RequestID(string: "a").json == "\"a\"")
        #expect(RequestID(string: "q\"\\\n").json == #""q\"\\\n""#)
        #expect(RequestID(json: "1.5e3").description == "1.5e3")
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
