import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// Nothing a connection holds outlives its channel (issue 13: handler and context kept each
/// other alive after close, ~0.9 KB per closed connection).
@Suite struct ConnectionReleaseTests {
    final class Weak: @unchecked Sendable {
        weak var handler: WebSocketConnection?
        weak var context: ChannelHandlerContext?
        weak var channel: EmbeddedChannel?
        init(_ handler: WebSocketConnection, _ context: ChannelHandlerContext, _ channel: EmbeddedChannel) {
            self.handler = handler
            self.context = context
            self.channel = channel
        }
        var isReleased: Bool { handler == nil && context == nil && channel == nil }
    }

    @Test func tenThousandClosedConnectionsLeaveNothingBehind() throws {
        let loop = EmbeddedEventLoop()
        let journal = MemoryJournal(epoch: "e1", execution: .inline)
        let broker = Broker(configuration: BrokerConfiguration(), journal: journal, eventLoops: [loop], logger: Logger(label: "test"))
        var references: [Weak] = []
        for index in 0..<10_000 {
            do {
                let channel = EmbeddedChannel(loop: loop)
                let connection = WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker)
                try channel.pipeline.syncOperations.addHandler(connection)
                let context = try channel.pipeline.syncOperations.context(handler: connection)
                references.append(Weak(connection, context, channel))
                try channel.sendClientText(##"{"op":"subscribe","topic":"t/#","history":0}"##)
                // Every other connection leaves with a retained publish still being acknowledged:
                // its completion reaches the loop after the channel is gone.
                if index % 2 == 0 { try channel.sendClientText(#"{"op":"publish","topic":"t/x","data":1,"retain":true,"id":1}"#) }
                loop.run()
                while try channel.readOutbound(as: ByteBuffer.self) != nil {}
                switch index % 3 {
                case 0: _ = try? channel.finish()
                case 1: try channel.sendClientText(#"{"op":"nope"}"#); _ = try? channel.close().wait()
                default: channel.pipeline.fireChannelInactive(); _ = try? channel.close().wait()
                }
            }
        }
        loop.run()
        #expect(broker.shards[0].connections.isEmpty)
        #expect(broker.shards[0].subscriptionCount == 0)
        let alive = references.filter { !$0.isReleased }.count
        #expect(alive == 0, "\(alive) of \(references.count) connections outlived their channel")
    }
}
