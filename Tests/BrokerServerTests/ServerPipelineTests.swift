import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// The listener's real pipeline (`BrokerServer.configurePipeline`: HTTP, the upgrader, the HTTP
/// handler, then NIO's frame decoder and the connection) on an EmbeddedChannel: bytes in, bytes out, and
/// time only when the test advances the loop's clock.
@Suite struct ServerPipelineTests {
    struct Harness {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        let broker: Broker

        init(configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
            var configuration = BrokerConfiguration()
            configure(&configuration)
            broker = Broker(
                configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
                logger: Logger(label: "test"))
            channel = EmbeddedChannel(loop: loop)
            let hooks = ServerHooks(isListening: { true }, renderMetrics: nil, admission: .open())
            try BrokerServer.configurePipeline(channel, broker: broker, hooks: hooks)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func send(_ text: String) throws { try send(ByteBuffer(string: text)) }

        func send(_ bytes: ByteBuffer) throws {
            try channel.writeInbound(bytes)
            loop.run()
        }

        /// A masked client text frame.
        func sendFrame(_ text: String) throws {
            let payload = Array(text.utf8)
            precondition(payload.count < 126)
            let key: [UInt8] = [1, 2, 3, 4]
            var frame = ByteBuffer(bytes: [0x81, 0x80 | UInt8(payload.count)] + key)
            frame.writeBytes(payload.enumerated().map { $0.element ^ key[$0.offset % 4] })
            try send(frame)
        }

        /// Everything written since the last call.
        func output() throws -> [UInt8] {
            loop.run()
            var bytes: [UInt8] = []
            while let part = try channel.readOutbound(as: IOData.self) {
                switch part {
                case .byteBuffer(let buffer): bytes += buffer.readableBytesView
                case .fileRegion: Issue.record("a file region")
                }
            }
            return bytes
        }

        /// The text of the server frames in `bytes` (unmasked, short).
        static func texts(_ bytes: ArraySlice<UInt8>) -> [String] {
            var rest = bytes
            var texts: [String] = []
            while rest.count >= 2 {
                let length = Int(rest[rest.startIndex + 1] & 0x7F)
                precondition(length < 126)
                let start = rest.startIndex + 2
                texts.append(String(decoding: rest[start..<start + length], as: UTF8.self))
                rest = rest[(start + length)...]
            }
            return texts
        }
    }

    static let upgrade = """
        GET /ws HTTP/1.1\r
        Host: localhost\r
        Upgrade: websocket\r
        Connection: Upgrade\r
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r
        Sec-WebSocket-Version: 13\r
        \r

        """

    @Test func halfARequestIsClosedAtTheIdleTimeoutNotBefore() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        try harness.send("GET /healthz HTTP/1.1\r\nHost: broker\r\n")  // and then nothing (slowloris)
        harness.loop.advanceTime(by: .seconds(5) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        #expect(try harness.output().isEmpty)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(!harness.channel.isActive)
    }

    @Test func upgradedConnectionOutlivesTheHTTPIdleTimeout() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5); $0.pingInterval = .seconds(3_600) }
        harness.loop.advanceTime(by: .seconds(4))  // the upgrade comes late, but in time
        try harness.send(Self.upgrade)
        let response = try harness.output()
        let headEnd = try #require(response.firstRange(of: Array("\r\n\r\n".utf8)))
        #expect(String(decoding: response[..<headEnd.lowerBound], as: UTF8.self).hasPrefix("HTTP/1.1 101"))
        let welcome = Harness.texts(response[headEnd.upperBound...])
        #expect(welcome.count == 1 && welcome[0].hasPrefix(#"{"op":"welcome""#))

        harness.loop.advanceTime(by: .seconds(60))
        #expect(harness.channel.isActive)
        try harness.sendFrame(#"{"op":"ping","id":1}"#)
        #expect(Harness.texts(try harness.output()[...]) == [#"{"op":"pong","id":1}"#])
    }
}
