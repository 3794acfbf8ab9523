import BrokerJournal
import BrokerProtocol
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// The shard's per-tick batches: what a loop delivers on a topic during one tick reaches each
/// subscriber as one write of a shared buffer, in order with everything else it is sent.
@Suite struct TickBatchTests {
    @Test func aBatchHandsOutSlicesAndTakesNoFrameAfterTheFirstSlice() {
        let batch = TickBatch(allocator: ByteBufferAllocator(), capacity: 16)
        let first = batch.append(ByteBuffer(string: "one"))
        let second = batch.append(ByteBuffer(string: "two"))
        #expect(first == 0..<3 && second == 3..<6)
        #expect(!batch.isSliced)
        #expect(String(buffer: batch.slice(first.lowerBound..<second.upperBound)) == "onetwo")
        #expect(batch.isSliced)
    }

    /// Two subscribers on one loop, three publishes in one tick.
    struct TwoSubscribers {
        let loop = EmbeddedEventLoop()
        let broker: Broker
        let channels: [EmbeddedChannel]
        let connections: [WebSocketConnection]

        init() throws {
            broker = Broker(
                configuration: BrokerConfiguration(), journal: MemoryJournal(epoch: "e1"), eventLoops: [loop],
                logger: Logger(label: "test"))
            var channels: [EmbeddedChannel] = []
            var connections: [WebSocketConnection] = []
            for _ in 0..<2 {
                let connection = WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker)
                let channel = EmbeddedChannel(loop: loop)
                try channel.pipeline.syncOperations.addHandler(connection)
                channels.append(channel)
                connections.append(connection)
            }
            self.channels = channels
            self.connections = connections
            loop.run()
            for channel in channels { while try channel.readOutbound(as: ByteBuffer.self) != nil {} }  // welcome
            for connection in connections { broker.shards[0].subscribe(connection, to: "t/#") }
        }

        func publish(_ data: String) {
            broker.fanOut(OutboundMessage(
                topic: "t/x", payload: ByteBuffer(string: data), isBinary: false, offset: nil, allocator: ByteBufferAllocator()),
                from: broker.shards[0])
        }

        /// The buffers written to `channel` since the last call.
        func writes(_ channel: EmbeddedChannel) throws -> [ByteBuffer] {
            var buffers: [ByteBuffer] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { buffers.append(buffer) }
            return buffers
        }
    }

    static func texts(_ buffers: [ByteBuffer]) -> [String] {
        var texts: [String] = []
        for var buffer in buffers {
            while buffer.readableBytes > 0 {
                _ = buffer.readInteger(as: UInt8.self)
                let length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
                texts.append(String(buffer: buffer.readSlice(length: length)!))
            }
        }
        return texts
    }

    @Test func oneTicksPublishesReachEachSubscriberAsOneWriteOfTheSameBytes() throws {
        let setup = try TwoSubscribers()
        for n in 1...3 { setup.publish("\(n)") }
        setup.loop.run()  // the end-of-tick flush
        let first = try setup.writes(setup.channels[0])
        let second = try setup.writes(setup.channels[1])
        #expect(first.count == 1 && second.count == 1)
        let expected = (1...3).map { #"{"op":"message","topic":"t/x","data":\#($0)}"# }
        #expect(Self.texts(first) == expected)
        #expect(first == second)
    }

    @Test func aFrameWrittenMidTickKeepsItsPlaceBetweenBatchedMessages() throws {
        let setup = try TwoSubscribers()
        setup.publish("1")
        setup.connections[0].sendControl { ServerMessageEncoder.pong(id: nil, into: &$0) }
        setup.publish("2")
        setup.loop.run()
        #expect(Self.texts(try setup.writes(setup.channels[0])) == [
            #"{"op":"message","topic":"t/x","data":1}"#, #"{"op":"pong"}"#, #"{"op":"message","topic":"t/x","data":2}"#,
        ])
        // The other subscriber gets both, in order (in two writes: the slice taken mid-tick
        // closed the first batch, so message 2 went into a new one).
        let other = try setup.writes(setup.channels[1])
        #expect(other.count == 2)
        #expect(Self.texts(other) == (1...2).map { #"{"op":"message","topic":"t/x","data":\#($0)}"# })
    }

    @Test func theNextTickStartsAFreshBatch() throws {
        let setup = try TwoSubscribers()
        setup.publish("1")
        setup.loop.run()
        setup.publish("2")
        setup.loop.run()
        let writes = try setup.writes(setup.channels[0])
        #expect(Self.texts(writes) == (1...2).map { #"{"op":"message","topic":"t/x","data":\#($0)}"# })
        #expect(writes.count == 2)
    }
}
