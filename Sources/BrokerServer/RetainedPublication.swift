import BrokerJournal
import BrokerProtocol
import NIOCore

/// A retained publish on its way through the journal, one object from the publisher's event loop
/// to the writer and back.
///
/// Built on the publisher's loop with its frame already encoded but for the offset (the offset
/// comes last in a text message and sits at a fixed place in a binary one), so the writer's
/// completion only appends the offset and the header. The completion stages the fan-out for
/// every loop and this object for the requester's loop, where the ack is sent and the object is
/// released, payload included, on the thread that allocated it.
///
/// Thread use: the loop builds it and hands it to the journal (whose queue lock orders that
/// before the writer's use); the writer alone touches `frame` after that; the requester's loop
/// receives it back through the outbox.
final class RetainedPublication: JournalAppendRequest, @unchecked Sendable {
    /// Who waits for the commit.
    enum Requester: Sendable {
        /// A WebSocket connection, acked on its loop.
        case connection(NIOLoopBound<WebSocketConnection>, RequestID?)
        /// Another caller (the HTTP API); runs on the loop of the shard given at init.
        case callback(@Sendable (Result<UInt64, JournalError>) -> Void)
    }

    let topic: String
    let levels: [Substring]
    let isBinary: Bool
    let requester: Requester
    private let shardPosition: Int
    private let broker: Broker
    private let started: NIODeadline
    private let allocator: ByteBufferAllocator
    /// The frame up to its offset (text), or with a zero offset at `binaryOffsetIndex`.
    private var frame: ByteBuffer
    private var binaryOffsetIndex = 0
    /// Where the payload's bytes sit in `frame` (verbatim in both forms).
    private let payloadIndex: Int
    private let payloadLength: Int

    /// The payload the journal stores: a view of the frame's copy. Keeping the original instead
    /// would pin the receive buffer it arrived in until the commit, so that NIO could not reuse
    /// its read buffers while thousands of publishes are in flight.
    var payload: ByteBuffer { frame.getSlice(at: payloadIndex, length: payloadLength)! }

    init(
        topic: String, payload: ByteBuffer, isBinary: Bool, requester: Requester, shardPosition: Int, broker: Broker,
        allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = Topic.levels(of: topic)
        self.isBinary = isBinary
        self.requester = requester
        self.shardPosition = shardPosition
        self.broker = broker
        self.started = .now()
        self.allocator = allocator
        // Room for the longest offset and the closing brace.
        frame = ServerFrame.begin(allocator: allocator, bodyCapacity: payload.readableBytes + topic.utf8.count + 64)
        payloadLength = payload.readableBytes
        if isBinary {
            binaryOffsetIndex = BinaryCodec.encodeMessageAwaitingOffset(topic: topic, payload: payload, into: &frame)
            payloadIndex = frame.writerIndex - payloadLength  // the payload comes last
        } else {
            payloadIndex = ServerMessageEncoder.messageAwaitingOffset(topic: topic, data: payload, into: &frame)
        }
    }

    /// On the journal's completion thread, in offset order.
    func completed(_ result: Result<UInt64, JournalError>) {
        broker.metrics.journalAppended(after: .now() - started)
        if case .success(let offset) = result {
            if isBinary {
                frame.setInteger(offset, at: binaryOffsetIndex)
                ServerFrame.finish(&frame, .binary)
            } else {
                ServerMessageEncoder.finishMessage(offset: offset, into: &frame)
                ServerFrame.finish(&frame, .text)
            }
            let frame = self.frame
            broker.fanOutFromWriter(broker.makeMessageOnWriter { compressor in
                OutboundMessage(
                    topic: topic, levels: levels, offset: offset, frame: frame, compressor: compressor, allocator: allocator)
            })
        }
        switch requester {
        case .connection:
            broker.outbox.complete(onShard: shardPosition, .retainedPublished(self, result))
        case .callback(let callback):
            broker.outbox.complete(onShard: shardPosition, .run { callback(result) })
        }
    }

    /// Back on the requester's loop.
    func acknowledge(_ result: Result<UInt64, JournalError>) {
        guard case .connection(let connection, let id) = requester else { return }
        connection.value.journalRequestCompleted(result.map(Optional.some), id: id)
    }
}
