import BrokerJournal
import BrokerProtocol
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// permessage-deflate through the connection handler on an EmbeddedChannel: compressed requests
/// in, close codes and compressed frames out.
@Suite struct CompressedConnectionTests {
    struct Frame {
        var rsv1: Bool
        var opcode: UInt8
        var payload: [UInt8]
        var closeCode: UInt16? { opcode == 0x8 && payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil }
        var message: String {
            String(decoding: rsv1 ? Self.inflate(payload) : payload, as: UTF8.self)
        }
        static func inflate(_ bytes: [UInt8]) -> [UInt8] {
            var output = ByteBuffer()
            let inflater = MessageInflater(windowBits: 15)!
            _ = inflater.inflate(ByteBuffer(bytes: bytes), into: &output, limit: 1 << 24)
            _ = inflater.finish(into: &output, limit: 1 << 24)
            return Array(output.readableBytesView)
        }
    }

    final class Harness {
        let channel: EmbeddedChannel
        let loop = EmbeddedEventLoop()
        let broker: Broker
        let connection: WebSocketConnection

        init(offer: String? = "permessage-deflate", maxMessageBytes: Int = 1 << 20) throws {
            var configuration = BrokerConfiguration()
            configuration.maxMessageBytes = maxMessageBytes
            broker = Broker(
                configuration: configuration, journal: MemoryJournal(epoch: "e1"), eventLoops: [loop],
                logger: Logger(label: "test"))
            let deflate = offer.flatMap { PerMessageDeflate.negotiate(headerLines: [$0]) }
            connection = WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker, deflate: deflate)
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(connection)
        }

        func send(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false) throws {
            let key: WebSocketMaskingKey = [9, 8, 7, 6]
            var data = ByteBuffer(bytes: bytes)
            data.webSocketMask(key)
            try channel.writeInbound(WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: key, data: data))
            loop.run()
        }

        /// Sends `text` compressed, cut into `fragments` frames.
        func sendCompressed(_ text: String, fragments: Int = 1) throws {
            var compressed = ByteBuffer()
            #expect(MessageDeflater(level: 6)!.compress(ByteBuffer(string: text), into: &compressed))
            let bytes = Array(compressed.readableBytesView)
            let size = (bytes.count + fragments - 1) / fragments
            for index in 0..<fragments {
                let part = Array(bytes[min(bytes.count, index * size)..<min(bytes.count, (index + 1) * size)])
                try send(index == 0 ? .text : .continuation, part, fin: index == fragments - 1, rsv1: index == 0)
            }
        }

        func written() throws -> [Frame] {
            loop.run()
            var frames: [Frame] = []
            while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
                while buffer.readableBytes > 0 {
                    let first = buffer.readInteger(as: UInt8.self)!
                    var length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
                    if length == 126 { length = Int(buffer.readInteger(as: UInt16.self)!) }
                    if length == 127 { length = Int(buffer.readInteger(as: UInt64.self)!) }
                    frames.append(Frame(rsv1: first & 0x40 != 0, opcode: first & 0x0F, payload: buffer.readBytes(length: length)!))
                }
            }
            return frames
        }
    }

    static let longData = "\"" + String(repeating: "compress me please ", count: 30) + "\""

    @Test func fragmentedCompressedPublishIsServedAndDeliveredCompressed() throws {
        let harness = try Harness()
        #expect(harness.broker.compressingConnections.load(ordering: .relaxed) == 1)
        _ = try harness.written()  // welcome
        try harness.sendCompressed(#"{"op":"subscribe","topic":"t","history":0}"#)
        try harness.sendCompressed(#"{"op":"publish","topic":"t","data":\#(Self.longData),"id":1}"#, fragments: 4)
        let frames = try harness.written()
        #expect(frames.count == 3)
        #expect(frames[0].message == #"{"op":"subscribed","topic":"t"}"#)
        #expect(frames[1].rsv1)  // the delivery: long enough to compress
        #expect(frames[1].message == #"{"op":"message","topic":"t","data":\#(Self.longData)}"#)
        #expect(!frames[2].rsv1 && frames[2].message == #"{"op":"ack","id":1}"#)
        _ = try harness.channel.close().wait()
        harness.loop.run()
        #expect(harness.broker.compressingConnections.load(ordering: .relaxed) == 0)
    }

    @Test func decompressionBombIsClosedWith1009() throws {
        let harness = try Harness(maxMessageBytes: 4096)
        _ = try harness.written()
        try harness.sendCompressed(String(repeating: "a", count: 1 << 20), fragments: 2)
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].closeCode == 1009)
        #expect(harness.connection.state == .closing)
    }

    @Test func rsv1WithoutNegotiationIsClosedWith1002() throws {
        let harness = try Harness(offer: nil)
        _ = try harness.written()
        try harness.sendCompressed(#"{"op":"ping"}"#)
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].closeCode == 1002)
    }

    @Test func rsv1OnAPingIsClosedWith1002() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.send(.ping, [1], rsv1: true)
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].closeCode == 1002)
    }
}
