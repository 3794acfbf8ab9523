import BrokerJournal
import BrokerProtocol
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// The connection handler on an EmbeddedChannel: frames in, encoded frames out, no sockets.
@Suite struct WebSocketConnectionTests {
    struct Harness {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let broker: Broker
        let connection: WebSocketConnection

        init(
            configure: (inout BrokerConfiguration) -> Void = { _ in }, identity: Identity = .open,
            authenticator: Authenticator? = nil
        ) throws {
            loop = EmbeddedEventLoop()
            var configuration = BrokerConfiguration()
            configure(&configuration)
            broker = Broker(
                configuration: configuration, journal: MemoryJournal(epoch: "e1"), eventLoops: [loop],
                logger: Logger(label: "test"))
            connection = WebSocketConnection(
                broker: broker, shard: broker.shards[0], mode: .broker, identity: identity, authenticator: authenticator)
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(connection)
        }

        /// Sends a masked client frame.
        /// `endTick: false` leaves the loop's pending tasks (the tick's flush) for a later frame.
        func send(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, endTick: Bool = true) throws {
            let key: WebSocketMaskingKey = [9, 8, 7, 6]
            var data = ByteBuffer(bytes: bytes)
            data.webSocketMask(key)
            try channel.writeInbound(WebSocketFrame(fin: fin, opcode: opcode, maskKey: key, data: data))
            if endTick { loop.run() }
        }

        func sendText(_ text: String, endTick: Bool = true) throws { try send(.text, Array(text.utf8), endTick: endTick) }

        /// The buffers written since the last call, as NIO got them.
        func writes() throws -> [ByteBuffer] {
            loop.run()
            var writes: [ByteBuffer] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { writes.append(buffer) }
            return writes
        }

        /// Frames written since the last call, decoded (server frames are unmasked, FIN set).
        func written() throws -> [(opcode: UInt8, payload: String)] {
            var frames: [(UInt8, String)] = []
            for var buffer in try writes() {
                while buffer.readableBytes > 0 {
                    let first = buffer.readInteger(as: UInt8.self)!
                    var length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
                    if length == 126 { length = Int(buffer.readInteger(as: UInt16.self)!) }
                    if length == 127 { length = Int(buffer.readInteger(as: UInt64.self)!) }
                    let payload = buffer.readSlice(length: length)!
                    frames.append((first & 0x0F, String(buffer: payload)))
                }
            }
            return frames
        }

        func texts() throws -> [String] { try written().map(\.payload) }
    }

    @Test func welcomeComesFirstAndAnnouncesLimitsAndEpoch() throws {
        let harness = try Harness(configure: { $0.maxMessageBytes = 4096 })
        let frames = try harness.written()
        #expect(frames.count == 1)
        #expect(frames[0].opcode == 0x1)
        #expect(frames[0].payload.hasPrefix(#"{"op":"welcome","protocol":1,"#))
        #expect(frames[0].payload.contains(#""maxMessageBytes":4096"#))
        #expect(frames[0].payload.contains(#""epoch":"e1""#))
    }

    @Test func repliesOfOneTickShareOneWriteInOrder() throws {
        let harness = try Harness()
        _ = try harness.written()
        for id in 1...3 { try harness.sendText(#"{"op":"ping","id":\#(id)}"#, endTick: false) }
        try harness.sendText("{oops", endTick: false)
        let writes = try harness.writes()
        #expect(writes.count == 1)
        try harness.channel.writeOutbound(writes.first ?? ByteBuffer())  // back out, to decode them
        let replies = try harness.texts()
        #expect(replies.prefix(3) == [#"{"op":"pong","id":1}"#, #"{"op":"pong","id":2}"#, #"{"op":"pong","id":3}"#])
        #expect(replies.count == 4 && replies[3].contains(#""code":"bad_request""#))
    }

    @Test func requestsAreAnsweredAndErrorsKeepTheConnectionOpen() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.sendText(#"{"op":"ping","id":42}"#)
        try harness.sendText("{oops")
        try harness.sendText(#"{"op":"publish","topic":"$x","data":1,"id":"p"}"#)
        let replies = try harness.texts()
        #expect(replies.count == 3)
        #expect(replies[0] == #"{"op":"pong","id":42}"#)
        #expect(replies[1].contains(#""code":"bad_request""#))
        #expect(replies[2].contains(#""code":"forbidden""#) && replies[2].contains(#""id":"p""#))
        #expect(harness.connection.state == .open)
    }

    @Test func subscribedConnectionReceivesSharedFrameOncePerPublish() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.sendText(#"{"op":"subscribe","topic":"a/#","history":0}"#)
        try harness.sendText(#"{"op":"subscribe","topic":"a/+","history":0}"#)
        #expect(try harness.texts() == [
            #"{"op":"subscribed","topic":"a/#"}"#, #"{"op":"subscribed","topic":"a/+"}"#,
        ])
        try harness.sendText(#"{"op":"publish","topic":"a/b","data":[1, 2]}"#)
        #expect(try harness.texts() == [#"{"op":"message","topic":"a/b","data":[1, 2]}"#])
        try harness.sendText(#"{"op":"unsubscribe","topic":"a/#"}"#)
        try harness.sendText(#"{"op":"unsubscribe","topic":"a/+"}"#)
        try harness.sendText(#"{"op":"publish","topic":"a/b","data":3}"#)
        #expect(try harness.texts() == [
            #"{"op":"unsubscribed","topic":"a/#"}"#, #"{"op":"unsubscribed","topic":"a/+"}"#,
        ])
        #expect(harness.broker.shards[0].subscriptionCount == 0)
    }

    /// `café` precomposed (U+00E9) and `cafe` + U+0301 are two filters on the wire. The
    /// connection's own set of filters once used `String` equality (canonical equivalence): the
    /// second subscribe was taken for a repeat and never reached the trie, and unsubscribing it
    /// removed the first from the set while the trie kept it, so the connection went on
    /// receiving a topic it had left.
    @Test func canonicallyEquivalentFiltersAreTwoSubscriptions() throws {
        let harness = try Harness()
        _ = try harness.written()
        let precomposed = "caf\u{00E9}", decomposed = "cafe\u{0301}"
        for filter in [decomposed, precomposed] {
            try harness.sendText(#"{"op":"subscribe","topic":"\#(filter)","history":0}"#)
        }
        #expect(try harness.texts().count == 2)
        #expect(harness.broker.shards[0].subscriptionCount == 2)
        for topic in [precomposed, decomposed] {
            try harness.sendText(#"{"op":"publish","topic":"\#(topic)","data":1}"#)
        }
        #expect(try harness.texts().count == 2)

        for filter in [precomposed, decomposed] {
            try harness.sendText(#"{"op":"unsubscribe","topic":"\#(filter)"}"#)
        }
        #expect(try harness.texts().count == 2)
        #expect(harness.broker.shards[0].subscriptionCount == 0)
        for topic in [precomposed, decomposed] {
            try harness.sendText(#"{"op":"publish","topic":"\#(topic)","data":2}"#)
        }
        #expect(try harness.texts().isEmpty)
    }

    @Test func pingFrameIsAnsweredWithPongCarryingThePayload() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.send(.ping, [1, 2])
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].opcode == 0xA && frames[0].payload == "\u{1}\u{2}")
    }

    @Test func protocolViolationSendsCloseAndStopsServing() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.send(.text, [0xFF])
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].opcode == 0x8)
        #expect(Array(frames[0].payload.utf8.prefix(2)) == [0x03, 0xEF])  // 1007
        #expect(harness.connection.state == .closing)
        try harness.sendText(#"{"op":"ping"}"#)
        #expect(try harness.written().isEmpty)
    }

    @Test func peerCloseIsEchoedAndChannelCloses() throws {
        let harness = try Harness()
        _ = try harness.written()
        try harness.send(.connectionClose, [0x03, 0xE8])
        let frames = try harness.written()
        #expect(frames.count == 1 && frames[0].opcode == 0x8)
        #expect(!harness.channel.isActive)
    }

    @Test func peerCloseGoesOutBehindWhatWasAlreadyDelivered() throws {
        let harness = try Harness()
        try harness.sendText(##"{"op":"subscribe","topic":"#","history":0}"##)
        _ = try harness.written()
        // Delivered in the same tick as the client's close, before the shard's flush.
        try harness.sendText(#"{"op":"publish","topic":"a","data":1}"#, endTick: false)
        try harness.send(.connectionClose, [0x03, 0xE8])
        let frames = try harness.written()
        #expect(frames.map(\.opcode) == [0x1, 0x8])
        #expect(frames.first?.payload == #"{"op":"message","topic":"a","data":1}"#)
    }

    @Test func busyLoopHoldsItsWritesWhileFramesKeepComing() throws {
        let harness = try Harness(configure: { $0.maxFlushDelay = .milliseconds(20) })
        try harness.sendText(##"{"op":"subscribe","topic":"#","history":0}"##)
        _ = try harness.written()
        // Stage a last flush that took 1 ms of small writes: the next writes may be held up to
        // 8 ms after it, in steps of 1 ms that each must bring two new frames per waiting
        // connection.
        harness.loop.advanceTime(by: .seconds(1))  // the embedded clock starts at zero
        let now = harness.loop.now
        harness.broker.shards[0].flushPolicy.flushed(from: now - .milliseconds(1), to: now, bytesPerConnection: 100)
        let step = harness.broker.shards[0].flushPolicy.holdStep
        #expect(step == .milliseconds(1))
        try harness.sendText(#"{"op":"publish","topic":"a","data":1}"#)
        try harness.sendText(#"{"op":"publish","topic":"a","data":2}"#)
        #expect(try harness.writes().isEmpty)
        harness.loop.advanceTime(by: step)  // frames came during the first step: hold on
        #expect(try harness.writes().isEmpty)
        try harness.sendText(#"{"op":"publish","topic":"a","data":3}"#)
        try harness.sendText(#"{"op":"publish","topic":"a","data":4}"#)
        harness.loop.advanceTime(by: step)  // and during the second
        #expect(try harness.writes().isEmpty)
        harness.loop.advanceTime(by: step)  // none during the third: flush, long before the cap
        // The four publishes leave in one write.
        let writes = try harness.writes()
        #expect(writes.count == 1)
        #expect(harness.loop.now - now < .milliseconds(FlushPolicy.holdPerFlushCost))
        try harness.channel.writeOutbound(writes.first ?? ByteBuffer())
        #expect(try harness.texts() == [
            #"{"op":"message","topic":"a","data":1}"#, #"{"op":"message","topic":"a","data":2}"#,
            #"{"op":"message","topic":"a","data":3}"#, #"{"op":"message","topic":"a","data":4}"#,
        ])
    }

    @Test func busyLoopFlushesAtTheCapThoughFramesKeepComing() throws {
        let harness = try Harness(configure: { $0.maxFlushDelay = .milliseconds(2) })
        try harness.sendText(##"{"op":"subscribe","topic":"#","history":0}"##)
        _ = try harness.written()
        harness.loop.advanceTime(by: .seconds(1))
        let now = harness.loop.now
        harness.broker.shards[0].flushPolicy.flushed(from: now - .milliseconds(1), to: now, bytesPerConnection: 100)
        // A publish every 0.5 ms, so every hold step (1 ms) brings frames: the hold would go on
        // forever but for the cap (2 ms).
        var data = 0
        while harness.loop.now - now < .milliseconds(2) {
            data += 1
            try harness.sendText(#"{"op":"publish","topic":"a","data":\#(data)}"#)
            #expect(try harness.writes().isEmpty)
            harness.loop.advanceTime(by: .microseconds(500))
        }
        #expect(try harness.writes().count == 1)
        #expect(data == 4)
    }

    @Test func closedConnectionLeavesTheShard() throws {
        let harness = try Harness()
        try harness.sendText(##"{"op":"subscribe","topic":"#","history":0}"##)
        #expect(harness.broker.shards[0].connections.count == 1)
        _ = try harness.channel.close().wait()
        harness.loop.run()
        #expect(harness.broker.shards[0].connections.isEmpty)
        #expect(harness.broker.shards[0].subscriptionCount == 0)
    }
}
