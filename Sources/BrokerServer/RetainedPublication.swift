import BrokerJournal
import BrokerProtocol
import NIOCore

/// A retained publish on its way through the journal, one object from the publisher's event loop
/// to the writer and back.
///
/// Built on the publisher's loop with its frame already encoded but for the offset (the offset
/// comes last in a text message and sits at a fixed place in a binary one), so the writer's
/// completion only appends the offset and the header. The completion hands the publication to
/// the server's `JournalOutbox`, which stages the frame for every loop and the publication's
/// `JournalCompletion` for the publisher's loop, where the waiter is answered and the object
/// released, payload included, on the thread that allocated it.
///
/// Thread use: the loop builds it and hands it to the journal (whose queue lock orders that
/// before the writer's use); the writer alone touches `frame` after that; the publisher's loop
/// receives it back through its mailbox.
final class RetainedPublication: JournalAppendRequest, @unchecked Sendable {
    let topic: String
    let levels: [Substring]
    let isBinary: Bool
    /// Who is answered once the journal is done, on the loop of shard `shardPosition`.
    let waiter: JournalWaiter
    let shardPosition: Int
    let started: NIODeadline
    let allocator: ByteBufferAllocator
    private let outbox: JournalOutbox
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
        topic: String, payload: ByteBuffer, isBinary: Bool, waiter: JournalWaiter, shardPosition: Int,
        outbox: JournalOutbox, allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = Topic.levels(of: topic)
        self.isBinary = isBinary
        self.waiter = waiter
        self.shardPosition = shardPosition
        self.outbox = outbox
        self.started = .now()
        self.allocator = allocator
        frame = ServerFrame.begin(allocator: allocator, bodyCapacity: OutboundMessage.bodyBytesEstimate(topic: topic, payload: payload))
        payloadLength = payload.readableBytes
        if isBinary {
            binaryOffsetIndex = BinaryCodec.encodeMessageAwaitingOffset(topic: topic, payload: payload, into: &frame)
            payloadIndex = frame.writerIndex - payloadLength  // the payload comes last
        } else {
            payloadIndex = ServerMessageEncoder.messageAwaitingOffset(topic: topic, data: payload, into: &frame)
        }
    }

    /// What a retained publish waiting for the journal is counted as against
    /// `maxPendingRetainedBytes`: its payload, its topic and a fixed share for the object, the
    /// frame's header room and the writer's queue entry.
    static func heldBytes(topic: String, payloadBytes: Int) -> Int {
        payloadBytes + topic.utf8.count + 128
    }

    /// `heldBytes` of this publication.
    var heldBytes: Int { Self.heldBytes(topic: topic, payloadBytes: payloadLength) }

    /// On the journal's completion thread, in offset order.
    func completed(_ result: Result<UInt64, JournalError>) {
        outbox.committed(self, result)
    }

    /// Completes the frame with its offset and header; on the writer, once.
    func finishFrame(offset: UInt64) -> ByteBuffer {
        if isBinary {
            frame.setInteger(offset, at: binaryOffsetIndex)
            ServerFrame.finish(&frame, .binary)
        } else {
            ServerMessageEncoder.finishMessage(offset: offset, into: &frame)
            ServerFrame.finish(&frame, .text)
        }
        return frame
    }
}
