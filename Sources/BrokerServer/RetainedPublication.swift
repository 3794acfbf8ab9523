import BrokerJournal
import BrokerProtocol
import NIOCore

/// A retained publish on its way through the journal, one object from the publisher's event loop
/// to the writer and back.
///
/// Built on the publisher's loop with its frame already encoded but for the offset (the offset
/// comes last in a text message and sits at a fixed place in a binary one), so the writer's
/// completion only appends the offset and the header. The completion stages the fan-out for
/// every loop and this object for the publisher's loop, where the ack is sent and the object is
/// released, payload included, on the thread that allocated it.
///
/// Thread use: the loop builds it and hands it to the journal (whose queue lock orders that
/// before the writer's use); the writer alone touches `frame` after that; the publisher's loop
/// receives it back through the outbox.
final class RetainedPublication: JournalAppendRequest, @unchecked Sendable {
    let topic: String
    let levels: [Substring]
    let payload: ByteBuffer
    let isBinary: Bool
    let id: RequestID?
    let connection: NIOLoopBound<WebSocketConnection>
    private let shardPosition: Int
    private let outbox: JournalOutbox
    /// The frame up to its offset (text), or with a zero offset at `binaryOffsetIndex`.
    private var frame: ByteBuffer
    private var binaryOffsetIndex = 0

    init(
        topic: String, payload: ByteBuffer, isBinary: Bool, id: RequestID?, connection: WebSocketConnection,
        allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = Topic.levels(of: topic)
        self.payload = payload
        self.isBinary = isBinary
        self.id = id
        self.connection = NIOLoopBound(connection, eventLoop: connection.eventLoop)
        self.shardPosition = connection.shard.position
        self.outbox = connection.broker.outbox
        // Room for the longest offset and the closing brace.
        frame = ServerFrame.begin(allocator: allocator, bodyCapacity: payload.readableBytes + topic.utf8.count + 64)
        if isBinary {
            binaryOffsetIndex = BinaryCodec.encodeMessageAwaitingOffset(topic: topic, payload: payload, into: &frame)
        } else {
            ServerMessageEncoder.messageAwaitingOffset(topic: topic, data: payload, into: &frame)
        }
    }

    /// On the journal's completion thread, in offset order.
    func completed(_ result: Result<UInt64, JournalError>) {
        if case .success(let offset) = result {
            if isBinary {
                frame.setInteger(offset, at: binaryOffsetIndex)
                ServerFrame.finish(&frame, .binary)
            } else {
                ServerMessageEncoder.finishMessage(offset: offset, into: &frame)
                ServerFrame.finish(&frame, .text)
            }
            outbox.deliverEverywhere(OutboundMessage(topic: topic, levels: levels, offset: offset, frame: frame))
        }
        outbox.complete(onShard: shardPosition, .retainedPublished(self, result))
    }
}
