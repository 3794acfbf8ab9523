import BrokerJournal
import BrokerProtocol
import BrokerRuntime
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

@testable import BrokerServer

/// Fan-out at scale, flow control and lifecycle, over real sockets.
@Suite(.serialized) struct DeliveryIntegrationTests {
    func subscribe(_ client: RawWebSocketClient, _ filter: String, extra: String = #","history":0"#) async throws {
        try await client.sendText(#"{"op":"subscribe","topic":"\#(filter)"\#(extra)}"#)
        guard case .subscribed = try await client.nextMessage() else {
            throw RawWebSocketClient.ClientError.handshake("not subscribed")
        }
    }

    @Test func thousandConcurrentSubscribersEachGetOneCopy() async throws {
        FileDescriptorLimit.raiseToHardLimit()
        // The raw clients never answer pings: on a loaded machine connecting 1000 of them takes
        // longer than ping-interval + pong-timeout (40 s), and keepalive closed the first ones.
        try await TestBroker.with(configure: { $0.pingInterval = .seconds(3_600) }) { broker in
            var clients: [RawWebSocketClient] = []
            for _ in 0..<1000 {
                let client = try await broker.client()
                try await subscribe(client, "fan/#")
                clients.append(client)
            }
            #expect(await broker.server.openConnections() == 1000)
            let publisher = clients[0]
            for n in 0..<3 {
                try await publisher.sendText(#"{"op":"publish","topic":"fan/out","data":\#(n)}"#)
            }
            try await withThrowingTaskGroup(of: [String].self) { group in
                for client in clients {
                    group.addTask {
                        var seen: [String] = []
                        for _ in 0..<3 {
                            guard case .message(let delivery) = try await client.nextMessage() else { continue }
                            seen.append(String(buffer: delivery.payload))
                        }
                        return seen
                    }
                }
                for try await seen in group { #expect(seen == ["0", "1", "2"]) }
            }
            // Nothing more arrives: a ping is answered next.
            try await clients[1].sendText(#"{"op":"ping","id":1}"#)
            guard case .pong = try await clients[1].nextMessage() else {
                Issue.record("an extra message arrived")
                return
            }
            for client in clients { await client.close() }
        }
    }

    /// On a broker configured by `configure`: one subscriber of `load` stops reading while 2,000
    /// messages of 8 KiB (16 MiB: more than the kernel buffers hold) are published, in windows of
    /// four that a healthy subscriber must receive before the next, so that only the stalled one
    /// falls behind, however loaded the machine is. Then `check` gets the stalled subscriber, which
    /// it resumes with `resumeReading`.
    func afterStallingOneSubscriber(
        configure: (inout BrokerConfiguration) -> Void,
        _ check: (RawWebSocketClient, TestBroker) async throws -> Void
    ) async throws {
        try await TestBroker.with(configure: configure) { broker in
            let stalled = try await broker.client()
            let healthy = try await broker.client()
            let publisher = try await broker.client()
            try await subscribe(stalled, "load")
            try await subscribe(healthy, "load")
            try await stalled.channel.setOption(.autoRead, value: false).get()

            let payload = String(repeating: "x", count: 8 * 1024)
            let count = 2_000
            var received = 0
            for n in 0..<count {
                try await publisher.sendText(#"{"op":"publish","topic":"load","data":"\#(n)\#(payload)"}"#)
                if n % 4 == 3 || n == count - 1 {
                    while received <= n {
                        if case .message = try await healthy.nextMessage(timeout: .seconds(20)) { received += 1 }
                    }
                }
            }
            #expect(received == count)

            try await check(stalled, broker)
            for client in [stalled, healthy, publisher] { await client.close() }
        }
    }

    /// Connections the broker is closing (or has closed, while still open) as slow consumers.
    func closingAsSlowConsumers(_ broker: TestBroker) async throws -> Int {
        var count = 0
        for shard in broker.server.broker.shards {
            count += try await shard.eventLoop.submit {
                shard.connections.filter { $0.disconnectReason == .slowConsumer }.count
            }.get()
        }
        return count
    }

    func resumeReading(_ client: RawWebSocketClient) async throws {
        try await client.channel.setOption(.autoRead, value: true).get()
        client.channel.read()
    }

    @Test func consumerOverTheHardLimitIsClosedWith1008WhileOthersKeepReceiving() async throws {
        // A long close timeout: the close frame waits behind what is buffered until we read it.
        try await afterStallingOneSubscriber(configure: {
            $0.maxOutboundBytes = 64 * 1024
            $0.closeTimeout = .seconds(120)
        }) { stalled, _ in
            try await resumeReading(stalled)
            #expect(try await stalled.expectClose(timeout: .seconds(20)) == 1008)
        }
    }

    @Test func consumerBehindForLongerThanTheTimeoutIsClosedWith1008() async throws {
        // 16 MiB behind, far below the hard limit: only the time behind can close it.
        try await afterStallingOneSubscriber(configure: {
            $0.outboundHighWaterBytes = 64 * 1024
            $0.maxOutboundBytes = 256 << 20
            $0.slowConsumerTimeout = .milliseconds(300)
            $0.closeTimeout = .seconds(120)
        }) { stalled, broker in
            // The stalled subscriber stays over the mark until it reads again, so the broker gives
            // up on it sooner or later; when exactly is tested on the loop's clock
            // (ConnectionTimerTests). Read again only once it has.
            try await eventually("the broker to close the stalled subscriber", timeout: .seconds(60)) {
                try await closingAsSlowConsumers(broker) == 1
            }
            try await resumeReading(stalled)
            #expect(try await stalled.expectClose(timeout: .seconds(20)) == 1008)
        }
    }

    @Test func consumerThatCatchesUpWithinTheTimeoutKeepsEveryMessage() async throws {
        // A stall (a GC pause, a busy client) that puts 16 MiB behind it: far over the high-water
        // mark once the kernel buffers are full, but short of the timeout. The timeout is far
        // longer than the stall can last (under ASan on a loaded machine it lasted 102 s, past
        // the 60 s this test once used); when it fires is ConnectionTimerTests' business.
        try await afterStallingOneSubscriber(configure: {
            $0.outboundHighWaterBytes = 64 * 1024
            $0.maxOutboundBytes = 256 << 20
            $0.slowConsumerTimeout = .seconds(3_600)
        }) { stalled, _ in
            try await resumeReading(stalled)
            var received = 0
            while received < 2_000 {
                guard case .message = try await stalled.nextMessage(timeout: .seconds(20)) else {
                    Issue.record("expected message \(received), got something else")
                    break
                }
                received += 1
            }
            #expect(received == 2_000)
        }
    }

    @Test func closeTimeoutDropsAPeerThatNeverAnswersTheCloseFrame() async throws {
        try await TestBroker.with(configure: { $0.closeTimeout = .milliseconds(200) }) { broker in
            let client = try await broker.client()
            try await client.send(opcode: 0x1, payload: [0xFF])  // invalid UTF-8: the broker closes
            #expect(try await client.expectClose() == 1007)
            // We never answer with our close frame: the TCP connection goes anyway.
            await #expect(throws: RawWebSocketClient.ClientError.closed) {
                _ = try await client.nextFrame(timeout: .seconds(5))
            }
            await client.close()
        }
    }

    @Test func gracefulShutdownClosesClientsWith1001() async throws {
        let broker = try await TestBroker.start()
        let port = broker.port
        let client = try await broker.client()
        try await subscribe(client, "x")
        let stopping = Task { await broker.stop() }
        #expect(try await client.expectClose() == 1001)
        await client.close()
        await stopping.value
        await #expect(throws: (any Error).self) {
            _ = try await RawWebSocketClient.connect(port: port)
        }
    }

    @Test func unansweredPingsCloseTheConnection() async throws {
        try await TestBroker.with(configure: {
            $0.pingInterval = .milliseconds(100)
            $0.pongTimeout = .milliseconds(100)
        }) { broker in
            let client = try await broker.client()
            let ping = try await client.nextFrame(timeout: .seconds(3))
            #expect(ping.opcode == 0x9)
            // No pong: the broker gives up.
            #expect(try await client.expectClose(timeout: .seconds(3)) == 1001)
            await client.close()
        }
    }

    @Test func answeredPingsKeepTheConnection() async throws {
        // Pings every 100 ms of silence, and all the time in the world to answer them: how long
        // the client takes to be scheduled on a loaded machine must not matter. The pong timeout
        // itself is tested on the loop's clock (ConnectionTimerTests).
        try await TestBroker.with(configure: {
            $0.pingInterval = .milliseconds(100)
            $0.pongTimeout = .seconds(60)
        }) { broker in
            let client = try await broker.client()
            for _ in 0..<4 {
                let frame = try await client.nextFrame(timeout: .seconds(3))
                #expect(frame.opcode == 0x9)
                try await client.send(opcode: 0xA, payload: frame.payload)
            }
            #expect(await broker.server.openConnections() == 1)
            await client.close()
        }
    }

    @Test func echoEndpointIsOffByDefaultAndEchoesWhenEnabled() async throws {
        try await TestBroker.with { broker in
            let refused = try await RawWebSocketClient.connect(port: broker.port, path: "/echo", expectUpgrade: false)
            #expect(refused.handshakeResponse.hasPrefix("HTTP/1.1 404"))
            await refused.close()
        }
        try await TestBroker.with(configure: { $0.echoPath = "/echo" }) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port, path: "/echo")
            try await client.send(opcode: 0x2, payload: [1, 2, 3], fin: false)
            try await client.send(opcode: 0x0, payload: [4])
            let frame = try await client.nextFrame()
            #expect(frame.opcode == 0x2 && frame.payload == [1, 2, 3, 4])
            await client.close()
        }
    }
}
