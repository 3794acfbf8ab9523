import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// Lame-duck shutdown on the loop's clock: the clients' close frames (1001) spread evenly over
/// the window, driven by advancing an EmbeddedEventLoop, so nothing here depends on real time.
@Suite struct LameDuckTests {
    @Test func delaysAreSpreadEvenlyFromZero() {
        let window = TimeAmount.seconds(10)
        #expect((0..<4).map { LameDuck.delay(ofClient: $0, of: 4, over: window) } == [
            .zero, .milliseconds(2_500), .seconds(5), .milliseconds(7_500),
        ])
        // One client, or no window: at once.
        #expect(LameDuck.delay(ofClient: 0, of: 1, over: window) == .zero)
        #expect(LameDuck.delay(ofClient: 3, of: 4, over: .zero) == .zero)
        // Every delay inside the window, whatever the count.
        let many = (0..<10_000).map { LameDuck.delay(ofClient: $0, of: 10_000, over: window) }
        let inWindow = many.allSatisfy { $0 >= .zero && $0 < window }
        let ascending = zip(many, many.dropFirst()).allSatisfy { $0 <= $1 }
        #expect(inWindow && ascending)
    }

    /// Four connections on one loop, closed over 8 s: one at once, then one every 2 s, each with
    /// 1001; `closeRemainingNow` then cancels what is left and drops the rest.
    @Test func connectionsGetTheirCloseFrameOneAfterAnotherOverTheWindow() throws {
        let (loop, shard, channels) = try Self.connected(4)
        shard.closeSpread(over: .seconds(8))
        loop.run()
        // Which channel got its close frame at each step; a close frame goes out once.
        var closedAt: [Int: Int] = [:]
        func collect(step: Int) throws {
            for (index, channel) in channels.enumerated() {
                let codes = try Self.closeCodes(channel)
                #expect(codes.allSatisfy { $0 == 1001 }, "channel \(index): \(codes)")
                if !codes.isEmpty {
                    #expect(closedAt[index] == nil, "channel \(index) closed twice")
                    closedAt[index] = step
                }
            }
        }
        try collect(step: 0)
        #expect(closedAt.count == 1, "at once: \(closedAt)")
        for step in 1...3 {
            loop.advanceTime(by: .seconds(2) - .nanoseconds(1))
            try collect(step: step * 10 - 1)
            #expect(closedAt.count == step, "just before \(step * 2) s: \(closedAt)")
            loop.advanceTime(by: .nanoseconds(1))
            try collect(step: step * 10)
            #expect(closedAt.count == step + 1, "at \(step * 2) s: \(closedAt)")
        }
        #expect(Set(closedAt.values) == [0, 10, 20, 30])
        // Nobody answered: the end of the grace period drops every connection.
        let allActive = channels.allSatisfy { $0.isActive }
        #expect(allActive)
        shard.closeRemainingNow()
        loop.run()
        let noneActive = channels.allSatisfy { !$0.isActive }
        #expect(noneActive)
        #expect(shard.connections.isEmpty)
    }

    /// A loop holding clients 2 and 3 of 4 (the broker's line across its loops) closes its two
    /// at 4 s and 6 s of an 8 s window, not at 0 and 4 s.
    @Test func aLoopTakesItsPlaceInTheLineAcrossLoops() throws {
        let (loop, shard, channels) = try Self.connected(2)
        shard.closeSpread(over: .seconds(8), first: 2, of: 4)
        loop.advanceTime(by: .seconds(4) - .nanoseconds(1))
        #expect(try channels.map { try Self.closeCodes($0) } == [[], []])
        loop.advanceTime(by: .nanoseconds(1))
        #expect(try channels.map { try Self.closeCodes($0) } == [[1001], []])
        loop.advanceTime(by: .seconds(2))
        #expect(try channels.map { try Self.closeCodes($0) } == [[], [1001]])
    }

    /// A client that closes during the window is passed over; the others keep their turn.
    @Test func aConnectionClosedMeanwhileIsPassedOver() throws {
        let (loop, shard, channels) = try Self.connected(3)
        shard.closeSpread(over: .seconds(3))
        loop.run()
        let first = try channels.map { try Self.closeCodes($0) }
        #expect(first.filter { $0 == [1001] }.count == 1)
        // The second in line goes away on its own before its turn.
        let remaining = channels.enumerated().filter { first[$0.offset].isEmpty }.map(\.element)
        try remaining[0].close().wait()
        loop.advanceTime(by: .seconds(3))
        #expect(try Self.closeCodes(remaining[1]) == [1001])
        #expect(shard.connections.count == 2)  // the two sent 1001 wait for the peer's close frame
    }

    /// A broker on one EmbeddedEventLoop with `count` connected connections on it, their
    /// welcomes read. No peer answers a close frame, and no close timer fires within a test.
    static func connected(_ count: Int) throws -> (loop: EmbeddedEventLoop, shard: FanoutShard, channels: [EmbeddedChannel]) {
        let loop = EmbeddedEventLoop()
        var configuration = BrokerConfiguration()
        configuration.closeTimeout = .seconds(600)
        let broker = Broker(
            configuration: configuration, journal: MemoryJournal(epoch: "e1"), eventLoops: [loop],
            logger: Logger(label: "test"))
        var channels: [EmbeddedChannel] = []
        for _ in 0..<count {
            let channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(
                WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            channels.append(channel)
        }
        loop.run()
        for channel in channels { _ = try closeCodes(channel) }
        return (loop, broker.shards[0], channels)
    }

    /// The close codes of the frames written on `channel` since the last call.
    static func closeCodes(_ channel: EmbeddedChannel) throws -> [UInt16] {
        try channel.readServerFrames().filter { $0.opcode == 0x8 }.compactMap { frame in
            var payload = frame.payload
            return payload.readInteger(as: UInt16.self)
        }
    }
}
