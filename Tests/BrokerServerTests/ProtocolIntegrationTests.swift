import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

@testable import BrokerServer

/// The real broker on an ephemeral port, driven over real sockets by a raw WebSocket client:
/// every op and every error of PROTOCOL.md.
@Suite struct ProtocolIntegrationTests {
    func text(_ message: ServerMessage) -> String {
        switch message {
        case .message(let delivery) where !delivery.isBinary: return "message \(delivery.topic) \(String(buffer: delivery.payload))"
        case .message(let delivery): return "binary \(delivery.topic) \(Array(delivery.payload.readableBytesView))"
        case .subscribed(let topic, let id, let recovered): return "subscribed \(topic) \(id?.json ?? "-") \(recovered.map(String.init) ?? "-")"
        case .unsubscribed(let topic, let id): return "unsubscribed \(topic) \(id?.json ?? "-")"
        case .ack(let id, let offset): return "ack \(id.json) \(offset.map(String.init) ?? "-")"
        case .pong(let id): return "pong \(id?.json ?? "-")"
        case .error(let code, _, let id): return "error \(code) \(id?.json ?? "-")"
        case .welcome: return "welcome"
        case .refreshed(let exp, let id): return "refreshed \(exp.map(String.init) ?? "null") \(id?.json ?? "-")"
        case .subscriptionEnded(let topic, let reason): return "unsubscribed \(topic) \(reason)"
        }
    }

    @Test func welcomeIsTheFirstFrame() async throws {
        try await TestBroker.with { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port)
            guard case .welcome(let welcome) = try await client.nextMessage() else {
                Issue.record("first frame is not a welcome")
                return
            }
            #expect(welcome.protocolVersion == 1)
            #expect(welcome.maxMessageBytes == 1 << 20)
            #expect(welcome.epoch == broker.journal.epoch)
            #expect(!welcome.session.isEmpty)
            await client.close()
        }
    }

    @Test func textAndBinaryFanOutWithWildcards() async throws {
        try await TestBroker.with { broker in
            let exact = try await broker.client()
            let wildcard = try await broker.client()
            let publisher = try await broker.client()
            try await exact.sendText(#"{"op":"subscribe","topic":"sensors/a/temp","id":1,"history":0}"#)
            #expect(text(try await exact.nextMessage()) == "subscribed sensors/a/temp 1 -")
            try await wildcard.sendText(#"{"op":"subscribe","topic":"sensors/+/temp","id":"w","history":0}"#)
            #expect(text(try await wildcard.nextMessage()) == #"subscribed sensors/+/temp "w" -"#)

            try await publisher.sendText(#"{"op":"publish","topic":"sensors/a/temp","data":{"c": 21.5},"id":9}"#)
            #expect(text(try await publisher.nextMessage()) == "ack 9 -")
            #expect(text(try await exact.nextMessage()) == #"message sensors/a/temp {"c": 21.5}"#)
            #expect(text(try await wildcard.nextMessage()) == #"message sensors/a/temp {"c": 21.5}"#)

            try await publisher.sendBinaryPublish(topic: "sensors/b/temp", payload: [0, 1, 2, 255], ackID: 77)
            #expect(text(try await publisher.nextMessage()) == "ack 77 -")
            #expect(text(try await wildcard.nextMessage()) == "binary sensors/b/temp [0, 1, 2, 255]")

            // The exact subscriber got nothing for sensors/b/temp: its next message is a pong.
            try await exact.sendText(#"{"op":"ping","id":"p"}"#)
            #expect(text(try await exact.nextMessage()) == #"pong "p""#)
            for client in [exact, wildcard, publisher] { await client.close() }
        }
    }

    @Test func overlappingFiltersDeliverOneCopyAndPublisherGetsItsOwn() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            for (index, filter) in ["a/#", "a/+", "a/b", "#"].enumerated() {
                try await client.sendText(#"{"op":"subscribe","topic":"\#(filter)","id":\#(index),"history":0}"#)
                #expect(text(try await client.nextMessage()) == "subscribed \(filter) \(index) -")
            }
            try await client.sendText(#"{"op":"publish","topic":"a/b","data":1}"#)
            try await client.sendText(#"{"op":"ping"}"#)
            #expect(text(try await client.nextMessage()) == "message a/b 1")
            #expect(text(try await client.nextMessage()) == "pong -")
            await client.close()
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            try await client.sendText(#"{"op":"subscribe","topic":"x","history":0}"#)
            _ = try await client.nextMessage()
            try await client.sendText(#"{"op":"unsubscribe","topic":"x","id":2}"#)
            #expect(text(try await client.nextMessage()) == "unsubscribed x 2")
            try await client.sendText(#"{"op":"unsubscribe","topic":"never","id":3}"#)
            #expect(text(try await client.nextMessage()) == "unsubscribed never 3")
            try await client.sendText(#"{"op":"publish","topic":"x","data":true}"#)
            try await client.sendText(#"{"op":"ping"}"#)
            #expect(text(try await client.nextMessage()) == "pong -")
            await client.close()
        }
    }

    @Test(arguments: [
        ("not json", "error bad_request -"),
        ("[1,2]", "error bad_request -"),
        (#"{"topic":"a"}"#, "error bad_request -"),
        (#"{"op":7,"id":1}"#, "error bad_request 1"),
        (#"{"op":"dance","id":"d"}"#, #"error unknown_op "d""#),
        (#"{"op":"subscribe","id":1}"#, "error bad_request 1"),
        (#"{"op":"subscribe","topic":"a/#/b","id":1}"#, "error invalid_topic 1"),
        (#"{"op":"subscribe","topic":"a","history":-1,"id":1}"#, "error bad_request 1"),
        (#"{"op":"subscribe","topic":"a","since":"3","id":1}"#, "error bad_request 1"),
        (#"{"op":"publish","topic":"a","id":1}"#, "error bad_request 1"),
        (#"{"op":"publish","topic":"a/+","data":1,"id":1}"#, "error invalid_topic 1"),
        (#"{"op":"publish","topic":"$sys/x","data":1,"id":1}"#, "error forbidden 1"),
        (#"{"op":"publish","topic":"a","data":1,"retain":"yes","id":1}"#, "error bad_request 1"),
        (#"{"op":"ping","id":true}"#, "error bad_request -"),
        (#"{"op":"ping","id":1.50}"#, "pong 1.50"),
    ])
    func controlErrorsKeepTheConnectionOpen(request: String, expected: String) async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            try await client.sendText(request)
            #expect(text(try await client.nextMessage()) == expected)
            try await client.sendText(#"{"op":"ping","id":"still-open"}"#)
            #expect(text(try await client.nextMessage()) == #"pong "still-open""#)
            await client.close()
        }
    }

    @Test(arguments: [
        ([UInt8](), "error bad_request -"),
        ([0x01, 0x00], "error bad_request -"),
        ([0x02, 0x00, 0x00, 0x01, 0x61], "error bad_request -"),
        ([0x01, 0x00, 0x00, 0x09, 0x61], "error bad_request -"),
        ([0x01, 0x02, 0x00, 0x01, 0x61, 0x00], "error bad_request -"),
        ([0x01, 0x02, 0x00, 0x03, 0x61, 0x2F, 0x23, 0, 0, 0, 5], "error invalid_topic 5"),
        ([0x01, 0x02, 0x00, 0x02, 0x24, 0x61, 0, 0, 0, 6], "error forbidden 6"),
        ([0x01, 0x02, 0x00, 0x02, 0xC0, 0x80, 0, 0, 0, 7], "error invalid_topic 7"),
    ])
    func malformedBinaryFramesKeepTheConnectionOpen(frame: [UInt8], expected: String) async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            try await client.send(opcode: 0x2, payload: frame)
            #expect(text(try await client.nextMessage()) == expected)
            try await client.sendText(#"{"op":"ping","id":1}"#)
            #expect(text(try await client.nextMessage()) == "pong 1")
            await client.close()
        }
    }

    @Test(arguments: [
        ("unmasked frame", 0x1 as UInt8, Array(#"{"op":"ping"}"#.utf8), false, 0 as UInt8, 1002 as UInt16),
        ("invalid UTF-8", 0x1, [0x7B, 0xC0, 0x80, 0x7D], true, 0, 1007),
        ("reserved opcode", 0x3, [], true, 0, 1002),
        ("reserved control opcode", 0xB, [], true, 0, 1002),
        ("rsv bits without extension", 0x1, Array("{}".utf8), true, 0x4, 1002),
        ("continuation without start", 0x0, [0x61], true, 0, 1002),
    ])
    func rfc6455ViolationsCloseWithTheRightCode(
        _ name: String, opcode: UInt8, payload: [UInt8], masked: Bool, rsv: UInt8, code: UInt16
    ) async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            try await client.send(opcode: opcode, payload: payload, rsv: rsv, masked: masked)
            #expect(try await client.expectClose() == code, "\(name)")
            await client.close()
        }
    }

    @Test func oversizeMessageClosesWith1009() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 1000; $0.maxFrameBytes = 4000 }) { broker in
            let client = try await broker.client()
            try await client.send(opcode: 0x2, payload: [UInt8](repeating: 1, count: 600), fin: false)
            try await client.send(opcode: 0x0, payload: [UInt8](repeating: 1, count: 600))
            #expect(try await client.expectClose() == 1009)
            await client.close()

            let big = try await broker.client()
            try await big.send(opcode: 0x2, payload: [UInt8](repeating: 1, count: 5000))
            #expect(try await big.expectClose() == 1009)
            await big.close()
        }
    }

    @Test func pingFramesAreAnsweredAndCloseIsEchoed() async throws {
        try await TestBroker.with { broker in
            let client = try await broker.client()
            try await client.send(opcode: 0x9, payload: [1, 2, 3])
            let pong = try await client.nextFrame()
            #expect(pong.opcode == 0xA && pong.payload == [1, 2, 3])
            try await client.send(opcode: 0x8, payload: [0x0F, 0xA0] + Array("bye".utf8))
            #expect(try await client.expectClose() == 4000)
            await client.close()
        }
    }

    @Test func tooManySubscriptions() async throws {
        try await TestBroker.with(configure: { $0.maxSubscriptionsPerConnection = 2 }) { broker in
            let client = try await broker.client()
            for topic in ["a", "b"] {
                try await client.sendText(#"{"op":"subscribe","topic":"\#(topic)","history":0}"#)
                _ = try await client.nextMessage()
            }
            try await client.sendText(#"{"op":"subscribe","topic":"c","id":3}"#)
            #expect(text(try await client.nextMessage()) == "error too_many_subscriptions 3")
            // Re-subscribing an existing filter is not a new subscription.
            try await client.sendText(#"{"op":"subscribe","topic":"a","id":4,"history":0}"#)
            #expect(text(try await client.nextMessage()) == "subscribed a 4 -")
            await client.close()
        }
    }

    @Test func topicLengthLimit() async throws {
        try await TestBroker.with(configure: { $0.maxTopicBytes = 8 }) { broker in
            let client = try await broker.client()
            try await client.sendText(#"{"op":"publish","topic":"123456789","data":1,"id":1}"#)
            #expect(text(try await client.nextMessage()) == "error invalid_topic 1")
            try await client.sendText(#"{"op":"subscribe","topic":"12345678","id":2,"history":0}"#)
            #expect(text(try await client.nextMessage()) == "subscribed 12345678 2 -")
            await client.close()
        }
    }

    @Test func plainHTTPRequestsGetPlainAnswers() async throws {
        try await TestBroker.with { broker in
            let notFound = try await RawWebSocketClient.connect(port: broker.port, path: "/nope", expectUpgrade: false)
            #expect(notFound.handshakeResponse.hasPrefix("HTTP/1.1 404"))
            await notFound.close()
        }
    }
}
