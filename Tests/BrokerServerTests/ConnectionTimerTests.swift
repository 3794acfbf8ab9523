import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// The connection's timers on an EmbeddedEventLoop, driven by advancing the loop's clock:
/// keepalive (ping after silence, close when the pong never comes), the slow-consumer timeout and
/// the close timeout. Nothing here waits for real time, so a loaded machine cannot change what
/// these tests see.
@Suite struct ConnectionTimerTests {
    typealias Harness = WebSocketConnectionTests.Harness

    static let ping: UInt8 = 0x9
    static let close: UInt8 = 0x8

    /// A connected connection (EmbeddedChannel is inactive until connected, which would make
    /// `isActive` checks vacuous), its welcome read.
    func connected(configure: (inout BrokerConfiguration) -> Void = { _ in }) throws -> Harness {
        let harness = try Harness(configure: configure)
        try harness.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        #expect(harness.channel.isActive)
        _ = try harness.writes()
        return harness
    }

    /// Starts the shard's keepalive sweeps, as `BrokerServer.start` does.
    func startKeepalive(_ harness: Harness) {
        let configuration = harness.broker.configuration
        harness.broker.shards[0].startKeepalive(interval: configuration.pingInterval, timeout: configuration.pongTimeout)
    }

    struct Frame: CustomStringConvertible {
        var opcode: UInt8
        var payload: [UInt8]
        var closeCode: UInt16? {
            guard opcode == ConnectionTimerTests.close, payload.count >= 2 else { return nil }
            return UInt16(payload[0]) << 8 | UInt16(payload[1])
        }
        var closeReason: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
        var description: String { "frame(op: \(opcode), \(payload.count) bytes)" }
    }

    /// Frames written since the last call, with their payloads' raw bytes (a close code is not
    /// UTF-8).
    func frames(_ harness: Harness) throws -> [Frame] {
        var frames: [Frame] = []
        for var buffer in try harness.writes() {
            while buffer.readableBytes > 0 {
                let first = buffer.readInteger(as: UInt8.self)!
                var length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
                if length == 126 { length = Int(buffer.readInteger(as: UInt16.self)!) }
                if length == 127 { length = Int(buffer.readInteger(as: UInt64.self)!) }
                frames.append(Frame(opcode: first & 0x0F, payload: buffer.readBytes(length: length)!))
            }
        }
        return frames
    }

    func disconnects(_ harness: Harness, _ reason: DisconnectReason) -> Int {
        harness.broker.shards[0].counters.disconnects[DisconnectReason.allCases.firstIndex(of: reason)!]
    }

    // MARK: Keepalive

    @Test func silentConnectionIsPingedAfterTheIntervalAndClosedWhenThePongNeverComes() throws {
        let harness = try connected { $0.pingInterval = .seconds(30); $0.pongTimeout = .seconds(10) }
        startKeepalive(harness)
        // Silent for just under the interval: no ping.
        var elapsed = TimeAmount.seconds(30) - .nanoseconds(1)
        harness.loop.advanceTime(by: elapsed)
        #expect(try frames(harness).isEmpty)
        // Then second by second: one ping, within two sweeps (5 s apart here), and nothing else.
        var pingedBy: TimeAmount?
        while pingedBy == nil, elapsed < .seconds(120) {
            harness.loop.advanceTime(by: .seconds(1))
            elapsed = elapsed + .seconds(1)
            let written = try frames(harness)
            #expect(written.allSatisfy { $0.opcode == Self.ping }, "at \(elapsed): \(written)")
            if !written.isEmpty {
                #expect(written.count == 1)
                pingedBy = elapsed  // the ping went out in the last second
            }
        }
        let pinged = try #require(pingedBy, "no ping after 120 s of silence")
        #expect(pinged <= .seconds(40), "pinged only after \(pinged) of silence")

        // No pong: open until the timeout has passed since the ping (sent after `pinged - 1 s`)...
        harness.loop.advanceTime(by: .seconds(9) - .nanoseconds(1))
        elapsed = elapsed + .seconds(9) - .nanoseconds(1)
        #expect(harness.channel.isActive)
        #expect(try frames(harness).isEmpty)
        // ...then closed with 1001, within a sweep.
        var closedBy: TimeAmount?
        while closedBy == nil, elapsed < pinged + .seconds(60) {
            harness.loop.advanceTime(by: .seconds(1))
            elapsed = elapsed + .seconds(1)
            if !harness.channel.isActive { closedBy = elapsed }
        }
        let closed = try #require(closedBy, "still open 60 s after an unanswered ping")
        #expect(closed - pinged <= .seconds(15), "closed only \(closed - pinged) after the ping")
        let written = try frames(harness)
        #expect(written.count == 1 && written.first?.closeCode == 1001, "\(written)")
        #expect(disconnects(harness, .pingTimeout) == 1)
        harness.broker.shards[0].stopKeepalive()
    }

    @Test func answeredPingsKeepTheConnectionOpen() throws {
        let harness = try connected { $0.pingInterval = .seconds(30); $0.pongTimeout = .seconds(10) }
        startKeepalive(harness)
        var pings = 0
        for _ in 0..<600 {  // ten minutes
            harness.loop.advanceTime(by: .seconds(1))
            for frame in try frames(harness) {
                #expect(frame.opcode == Self.ping)
                pings += 1
                try harness.send(.pong, [])
            }
        }
        #expect(harness.channel.isActive)
        #expect(harness.connection.state == .open)
        // The pong is traffic: the next ping comes after another 30-40 s of silence.
        #expect(pings >= 15 && pings <= 20, "\(pings) pings in ten minutes")
        harness.broker.shards[0].stopKeepalive()
    }

    /// Holds every write and its promise until released, as a socket whose peer reads nothing
    /// holds them in NIO's queue.
    final class WriteGate: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var holding = true
        var heldCount: Int { held.count }
        private var held: [(ByteBuffer, EventLoopPromise<Void>?)] = []
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            guard holding else { return context.write(data, promise: promise) }
            held.append((unwrapOutboundIn(data), promise))
        }

        func flush(context: ChannelHandlerContext) {
            if !holding { context.flush() }
        }

        func release() {
            holding = false
            guard let context else { return }
            for (buffer, promise) in held { context.write(wrapOutboundOut(buffer), promise: promise) }
            held = []
            context.flush()
        }
    }

    /// Silent until the ping is queued; returns when it was (a sweep runs every few seconds).
    func advanceUntilPingQueued(_ harness: Harness, gate: WriteGate) -> TimeAmount {
        var elapsed = TimeAmount.zero
        while elapsed < .seconds(45) {
            harness.loop.advanceTime(by: .seconds(1))
            elapsed = elapsed + .seconds(1)
            if gate.heldCount > 0 { return elapsed }
        }
        return elapsed
    }

    @Test func pongTimeoutStartsWhenThePingHasLeftNotWhenItWasQueued() throws {
        let harness = try connected { $0.pingInterval = .seconds(30); $0.pongTimeout = .seconds(10) }
        let gate = WriteGate()
        try harness.channel.pipeline.syncOperations.addHandler(gate, position: .first)
        startKeepalive(harness)
        let queued = advanceUntilPingQueued(harness, gate: gate)
        #expect(queued <= .seconds(40) && gate.heldCount == 1)
        // Behind data the peer is still reading, the ping waits 30 s: no pong is owed yet.
        harness.loop.advanceTime(by: .seconds(30))
        #expect(harness.channel.isActive)
        gate.release()
        #expect(try frames(harness).map(\.opcode) == [Self.ping])
        // From the moment it left, the peer has the pong timeout to answer.
        harness.loop.advanceTime(by: .seconds(10) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .seconds(6))  // the next sweep
        #expect(!harness.channel.isActive)
        #expect(try frames(harness).first?.closeCode == 1001)
        #expect(disconnects(harness, .pingTimeout) == 1)
        harness.broker.shards[0].stopKeepalive()
    }

    @Test func pingThatNeverLeavesClosesTheConnectionAfterTheIntervalAndTimeout() throws {
        let harness = try connected { $0.pingInterval = .seconds(30); $0.pongTimeout = .seconds(10) }
        let gate = WriteGate()
        try harness.channel.pipeline.syncOperations.addHandler(gate, position: .first)
        startKeepalive(harness)
        _ = advanceUntilPingQueued(harness, gate: gate)
        harness.loop.advanceTime(by: .seconds(40) - .seconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .seconds(7))  // past interval + timeout, and a sweep
        #expect(!harness.channel.isActive)
        #expect(disconnects(harness, .pingTimeout) == 1)
        harness.broker.shards[0].stopKeepalive()
    }

    @Test func trafficFromTheClientMeansNoPing() throws {
        let harness = try connected { $0.pingInterval = .seconds(30); $0.pongTimeout = .seconds(10) }
        startKeepalive(harness)
        for second in 1...600 {
            harness.loop.advanceTime(by: .seconds(1))
            if second % 20 == 0 { try harness.sendText(#"{"op":"ping"}"#) }
            let written = try frames(harness)
            #expect(!written.contains { $0.opcode == Self.ping }, "pinged at \(second) s though the client spoke every 20 s")
        }
        #expect(harness.channel.isActive)
        harness.broker.shards[0].stopKeepalive()
    }

    // MARK: Slow consumers

    /// Makes the channel unwritable (over the high-water mark) or writable again, as NIO reports it.
    func setWritable(_ harness: Harness, _ writable: Bool) {
        harness.channel.isWritable = writable
        harness.channel.pipeline.fireChannelWritabilityChanged()
    }

    @Test func consumerUnwritableForTheTimeoutIsClosedWith1008NotBefore() throws {
        let harness = try connected { $0.slowConsumerTimeout = .seconds(10); $0.closeTimeout = .seconds(5) }
        setWritable(harness, false)
        harness.loop.advanceTime(by: .seconds(10) - .nanoseconds(1))
        #expect(try frames(harness).isEmpty)
        #expect(harness.connection.state == .open)
        harness.loop.advanceTime(by: .nanoseconds(1))
        let written = try frames(harness)
        #expect(written.count == 1 && written.first?.closeCode == 1008, "\(written)")
        #expect(written.first?.closeReason == "slow consumer")
        #expect(harness.connection.state == .closing)
        // The peer that never reads never answers the close either: dropped after the close timeout.
        harness.loop.advanceTime(by: .seconds(5) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(!harness.channel.isActive)
        #expect(disconnects(harness, .slowConsumer) == 1)
    }

    @Test func consumerThatCatchesUpInTimeStaysAndAFreshStallGetsAFullTimeout() throws {
        let harness = try connected { $0.slowConsumerTimeout = .seconds(10) }
        setWritable(harness, false)
        harness.loop.advanceTime(by: .seconds(10) - .nanoseconds(1))
        setWritable(harness, true)  // drained below half the mark just in time
        harness.loop.advanceTime(by: .seconds(60))
        #expect(try frames(harness).isEmpty)
        #expect(harness.connection.state == .open)

        setWritable(harness, false)
        harness.loop.advanceTime(by: .seconds(10) - .nanoseconds(1))
        #expect(harness.connection.state == .open)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(harness.connection.state == .closing)
        #expect(try frames(harness).map(\.closeCode) == [1008])
    }

    // MARK: Close handshake

    @Test func closeStartedByTheBrokerDropsTheConnectionAfterTheCloseTimeoutIfNeverAnswered() throws {
        let harness = try connected { $0.closeTimeout = .seconds(5) }
        try harness.send(.text, [0xFF])  // invalid UTF-8: the broker closes with 1007
        #expect(try frames(harness).map(\.closeCode) == [1007])
        #expect(harness.connection.state == .closing)
        harness.loop.advanceTime(by: .seconds(5) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(!harness.channel.isActive)
    }

    @Test func closeStartedByTheBrokerEndsAsSoonAsThePeerAnswers() throws {
        let harness = try connected { $0.closeTimeout = .seconds(5) }
        try harness.send(.text, [0xFF])
        #expect(try frames(harness).map(\.closeCode) == [1007])
        harness.loop.advanceTime(by: .seconds(1))
        #expect(harness.channel.isActive)
        try harness.send(.connectionClose, [0x03, 0xEF])
        #expect(!harness.channel.isActive)
        harness.loop.advanceTime(by: .seconds(10))  // the cancelled timer does nothing
        #expect(try frames(harness).isEmpty)
    }

    /// The peer starts the close: echoed, and the connection ends at once, with no timer.
    /// (WebSocketConnectionTests checks the echo on a channel that was never connected, where
    /// `isActive` is false from the start.)
    @Test func closeStartedByThePeerIsEchoedAndEndsAtOnce() throws {
        let harness = try connected { $0.closeTimeout = .seconds(5) }
        try harness.send(.connectionClose, [0x03, 0xE8])
        #expect(try frames(harness).map(\.closeCode) == [1000])
        #expect(!harness.channel.isActive)
        #expect(disconnects(harness, .clientClose) == 1)
    }
}
