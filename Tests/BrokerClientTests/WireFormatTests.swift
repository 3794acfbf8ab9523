import BrokerProtocol
import NIOCore
import Testing
@testable import BrokerClient

@Suite struct WireFormatTests {
    @Test func requestsParseAsTheBrokerReadsThem() throws {
        let subscribe = try ControlRequest.parseText(
            RequestEncoder.subscribe(id: 7, SubscribeRequest(filter: "a/\"q\"/#", history: 3, since: 9, epoch: "ep"))).get()
        #expect(subscribe.id == RequestID(7))
        guard case .subscribe(let request) = subscribe.request else { Issue.record("not a subscribe"); return }
        #expect(request == SubscribeRequest(filter: "a/\"q\"/#", history: 3, since: 9, epoch: "ep"))

        let publish = try ControlRequest.parseText(
            RequestEncoder.publish(id: 8, topic: "t", json: ByteBuffer(string: #" {"n":[1,2]} "#), retain: true)).get()
        guard case .publish(let topic, let payload, let isBinary, let retain) = publish.request else { Issue.record("not a publish"); return }
        #expect(topic == "t" && !isBinary && retain && publish.id == RequestID(8))
        #expect(String(buffer: payload) == #"{"n":[1,2]}"#)

        let binary = try BinaryCodec.decodePublish(
            RequestEncoder.binaryPublish(id: 0xDEAD_BEEF, topic: "b", payload: ByteBuffer(bytes: [0, 1, 2]), retain: false)).get()
        guard case .publish(_, let bytes, true, false) = binary.request else { Issue.record("not a binary publish"); return }
        #expect(binary.id == RequestID(UInt32(0xDEAD_BEEF)))
        #expect(Array(bytes.readableBytesView) == [0, 1, 2])

        let unsubscribe = try ControlRequest.parseText(RequestEncoder.unsubscribe(id: 1, filter: "a/+")).get()
        guard case .unsubscribe("a/+") = unsubscribe.request else { Issue.record("not an unsubscribe"); return }
        guard case .ping = try ControlRequest.parseText(RequestEncoder.ping(id: 2)).get().request else { Issue.record("not a ping"); return }
    }

    @Test func jsonValidation() {
        #expect(throws: Never.self) { try RequestEncoder.validateJSON(ByteBuffer(string: #"{"a":1}"#)) }
        #expect(throws: Never.self) { try RequestEncoder.validateJSON(ByteBuffer(string: #" "text" "#)) }
        #expect(throws: BrokerClientError.self) { try RequestEncoder.validateJSON(ByteBuffer(string: "hello")) }
        #expect(throws: BrokerClientError.self) { try RequestEncoder.validateJSON(ByteBuffer(string: "{} {}")) }
        #expect(throws: BrokerClientError.self) { try RequestEncoder.validateJSON(ByteBuffer()) }
    }

    @Test func jsonLinesOfTheCLI() {
        let text = BrokerMessage(topic: "demo/x", payload: ByteBuffer(string: #"{"n":1}"#), isBinary: false)
        #expect(text.jsonLine == #"{"topic":"demo/x","data":{"n":1}}"#)
        let retained = BrokerMessage(topic: "a\"b", payload: ByteBuffer(string: "[1]"), isBinary: false, offset: 42, replay: true)
        #expect(retained.jsonLine == #"{"topic":"a\"b","data":[1],"offset":42,"replay":true}"#)
        let binary = BrokerMessage(topic: "cam/1", payload: ByteBuffer(bytes: [0, 1, 2, 0xFF]), isBinary: true, offset: 3)
        #expect(binary.jsonLine == #"{"topic":"cam/1","binary":"AAEC/w==","offset":3}"#)
        let empty = BrokerMessage(topic: "e", payload: ByteBuffer(), isBinary: true)
        #expect(empty.jsonLine == #"{"topic":"e","binary":""}"#)
    }

    @Test func messageHelpers() throws {
        let string = BrokerMessage(topic: "t", payload: ByteBuffer(string: #""h\u00e9\n""#), isBinary: false)
        #expect(string.string == "hé\n")
        #expect(string.json == #""h\u00e9\n""#)
        let object = BrokerMessage(topic: "t", payload: ByteBuffer(string: #"{"n":2}"#), isBinary: false)
        #expect(object.string == nil)
        struct N: Decodable { var n: Int }
        #expect(try object.decode(N.self).n == 2)
        let binary = BrokerMessage(topic: "t", payload: ByteBuffer(bytes: Array("ok".utf8)), isBinary: true)
        #expect(binary.string == "ok" && binary.json == nil && binary.bytes == [0x6F, 0x6B])
        #expect(BrokerMessage(topic: "t", payload: ByteBuffer(bytes: [0xFF]), isBinary: true).string == nil)
    }

    @Test func serverErrorsAreTyped() {
        let error = BrokerClientError.server(code: "invalid_topic", message: "bad")
        #expect(error.serverCode == .invalidTopic)
        #expect(error.description == "invalid_topic: bad")
        #expect(BrokerClientError.cannotConnect(url: "ws://h/ws", reason: "connection refused").description
            == "cannot connect to ws://h/ws: connection refused")
    }
}
