import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket

@testable import BrokerServer

/// Counts the reads that pass it towards the head of the pipeline: what NIO turns into socket
/// reads. Put in front of a connection, it shows whether the connection lets reads through.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    private(set) var reads = 0

    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

/// WebSocket connections on one embedded loop sharing one broker, with a journal that commits
/// when the test says (`HeldJournal`) and a `ReadCounter` in front of each connection.
struct LimitsHarness {
    final class Client {
        let channel: EmbeddedChannel
        let reads: ReadCounter
        init(_ channel: EmbeddedChannel, _ reads: ReadCounter) {
            self.channel = channel
            self.reads = reads
        }

        func send(_ text: String) throws { try channel.sendClientText(text) }

        func sendBinary(_ bytes: [UInt8]) throws {
            let key: WebSocketMaskingKey = [1, 2, 3, 4]
            var data = ByteBuffer(bytes: bytes)
            data.webSocketMask(key)
            try channel.writeInbound(WebSocketFrame(fin: true, opcode: .binary, maskKey: key, data: data))
        }

        /// Text frames written since the last call.
        func texts() throws -> [String] {
            try channel.readServerFrames().filter { $0.opcode == 0x1 }.map(\.text)
        }

        /// Whether a read the channel asks for now reaches the socket (or is held back).
        func readPasses() -> Bool {
            let before = reads.reads
            channel.read()
            return reads.reads > before
        }
    }

    let loop = EmbeddedEventLoop()
    let journal = HeldJournal()
    let broker: Broker

    init(configure: (inout BrokerConfiguration) -> Void = { _ in }) {
        var configuration = BrokerConfiguration()
        configuration.maxFlushDelay = .zero
        configure(&configuration)
        broker = Broker(configuration: configuration, journal: journal, eventLoops: [loop], logger: Logger(label: "test"))
    }

    /// A connection, its welcome read.
    func connect() throws -> Client {
        let channel = EmbeddedChannel(loop: loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        let reads = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(reads)
        try channel.pipeline.syncOperations.addHandler(WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker))
        let client = Client(channel, reads)
        loop.run()
        _ = try client.texts()
        return client
    }
}
