import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import NIOCore
import Testing

@testable import BrokerServer

/// permessage-deflate over real sockets: negotiation on the upgrade, one compressed frame shared
/// by every compressing subscriber, plain frames for the others and for small messages.
@Suite(.serialized) struct CompressionIntegrationTests {
    static let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    static let bigData = "\"" + String(repeating: "temperature 21.5 humidity 40 ", count: 40) + "\""

    func subscribe(_ client: RawWebSocketClient, _ filter: String, extra: String = #","history":0"#) async throws {
        try await client.sendText(#"{"op":"subscribe","topic":"\#(filter)"\#(extra)}"#)
        guard case .subscribed = try await client.nextMessage() else {
            throw RawWebSocketClient.ClientError.handshake("not subscribed")
        }
    }

    /// The next data frame, skipping pings.
    func nextDataFrame(_ client: RawWebSocketClient) async throws -> RawWebSocketClient.Frame {
        while true {
            let frame = try await client.nextFrame()
            if frame.opcode == 0x1 || frame.opcode == 0x2 { return frame }
        }
    }

    @Test func theUpgradeAnswersTheOffer() async throws {
        try await TestBroker.with { broker in
            let compressing = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: [Self.offer])
            #expect(compressing.handshakeResponse.lowercased().contains(
                "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"))
            let plain = try await RawWebSocketClient.connect(port: broker.port)
            #expect(!plain.handshakeResponse.lowercased().contains("sec-websocket-extensions"))
            let refused = try await RawWebSocketClient.connect(
                port: broker.port, extraHeaders: ["Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8"])
            #expect(!refused.handshakeResponse.lowercased().contains("sec-websocket-extensions"))
            for client in [compressing, plain, refused] { await client.close() }
        }
        try await TestBroker.with(configure: { $0.compressionEnabled = false }) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: [Self.offer])
            #expect(!client.handshakeResponse.lowercased().contains("sec-websocket-extensions"))
            await client.close()
        }
    }

    @Test func oneCompressedFrameForEveryCompressingSubscriberAndPlainForTheOthers() async throws {
        try await TestBroker.with { broker in
            let first = try await broker.client(extraHeaders: [Self.offer])
            let second = try await broker.client(extraHeaders: [Self.offer])
            let plain = try await broker.client()
            let publisher = try await broker.client()
            for client in [first, second, plain] { try await subscribe(client, "dash/#") }

            try await publisher.sendText(#"{"op":"publish","topic":"dash/a","data":\#(Self.bigData)}"#)
            let a = try await nextDataFrame(first)
            let b = try await nextDataFrame(second)
            let p = try await nextDataFrame(plain)
            #expect(a.rsv1 && b.rsv1 && !p.rsv1)
            #expect(a.payload == b.payload)  // the same bytes: compressed once
            #expect(a.payload.count < p.payload.count / 4)
            #expect(a.messageBytes == p.payload)

            // Binary and retained messages too.
            try await publisher.sendBinaryPublish(topic: "dash/b", payload: Array(Self.bigData.utf8), retain: true, ackID: 1)
            let binaryA = try await nextDataFrame(first)
            let binaryB = try await nextDataFrame(second)
            let binaryP = try await nextDataFrame(plain)
            #expect(binaryA.opcode == 0x2 && binaryA.rsv1 && binaryA.payload == binaryB.payload)
            #expect(!binaryP.rsv1 && binaryA.messageBytes == binaryP.payload)

            // Small messages go plain to everyone.
            try await publisher.sendText(#"{"op":"publish","topic":"dash/a","data":1}"#)
            for client in [first, second, plain] {
                let frame = try await nextDataFrame(client)
                #expect(!frame.rsv1)
                guard case .message(let delivery) = try ServerMessage.parseText(ByteBuffer(bytes: frame.payload)) else {
                    Issue.record("not a message")
                    continue
                }
                #expect(String(buffer: delivery.payload) == "1")
            }
            for client in [first, second, plain, publisher] { await client.close() }
        }
    }

    @Test func replayedMessagesAreCompressedForACompressingSubscriber() async throws {
        try await TestBroker.with { broker in
            let publisher = try await broker.client()
            try await publisher.sendText(#"{"op":"publish","topic":"r/a","data":\#(Self.bigData),"retain":true,"id":1}"#)
            guard case .ack = try await publisher.nextMessage() else { throw RawWebSocketClient.ClientError.closed }
            let subscriber = try await broker.client(extraHeaders: [Self.offer])
            try await subscriber.sendText(#"{"op":"subscribe","topic":"r/#"}"#)
            guard case .subscribed = try await subscriber.nextMessage() else { throw RawWebSocketClient.ClientError.closed }
            let replayed = try await nextDataFrame(subscriber)
            #expect(replayed.rsv1)
            guard case .message(let delivery) = try ServerMessage.parseText(ByteBuffer(bytes: replayed.messageBytes)) else {
                throw RawWebSocketClient.ClientError.closed
            }
            #expect(delivery.replay && String(buffer: delivery.payload) == Self.bigData)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test func aClientWithASmallServerWindowGetsLongMessagesPlain() async throws {
        try await TestBroker.with { broker in
            let small = try await broker.client(extraHeaders: [
                "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9",
            ])
            #expect(small.handshakeResponse.contains("server_max_window_bits=9"))
            let full = try await broker.client(extraHeaders: [Self.offer])
            try await subscribe(small, "w")
            try await subscribe(full, "w")
            try await full.sendText(#"{"op":"publish","topic":"w","data":\#(Self.bigData)}"#)
            #expect(try await nextDataFrame(full).rsv1)
            #expect(try await !nextDataFrame(small).rsv1)  // longer than 512 bytes
            let medium = "\"" + String(repeating: "abcdefgh", count: 40) + "\""  // fits 512 bytes
            try await full.sendText(#"{"op":"publish","topic":"w","data":\#(medium)}"#)
            let fullFrame = try await nextDataFrame(full)
            let smallFrame = try await nextDataFrame(small)
            #expect(fullFrame.rsv1 && smallFrame.rsv1 && fullFrame.payload == smallFrame.payload)
            await small.close()
            await full.close()
        }
    }

    @Test func compressedRequestsAreServedAndBombsClosedWith1009() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 64 * 1024 }) { broker in
            let client = try await broker.client(extraHeaders: [Self.offer])
            try await subscribe(client, "in")
            let publish = #"{"op":"publish","topic":"in","data":\#(Self.bigData),"id":5}"#
            try await client.sendCompressed(opcode: 0x1, payload: Array(publish.utf8), fragments: 3)
            var sawAck = false
            var sawMessage = false
            while !(sawAck && sawMessage) {
                switch try await client.nextMessage() {
                case .ack: sawAck = true
                case .message(let delivery): sawMessage = String(buffer: delivery.payload) == Self.bigData
                default: Issue.record("unexpected reply")
                }
            }
            // 16 MiB of zeros is a few KiB compressed and far over the 64 KiB limit.
            try await client.sendCompressed(opcode: 0x2, payload: [UInt8](repeating: 0, count: 16 << 20))
            #expect(try await client.expectClose() == 1009)
            await client.close()

            // RSV1 from a client that did not negotiate the extension is a protocol error.
            let plain = try await broker.client()
            try await plain.sendCompressed(opcode: 0x1, payload: Array(publish.utf8))
            #expect(try await plain.expectClose() == 1002)
            await plain.close()
        }
    }

    @Test func echoEndpointCompressesItsAnswers() async throws {
        try await TestBroker.with(configure: { $0.echoPath = "/echo" }) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port, path: "/echo", extraHeaders: [Self.offer])
            let payload = Array(Self.bigData.utf8)
            try await client.sendCompressed(opcode: 0x1, payload: payload, fragments: 2)
            let echoed = try await nextDataFrame(client)
            #expect(echoed.rsv1 && echoed.messageBytes == payload)
            await client.close()
        }
    }
}
