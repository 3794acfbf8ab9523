import BrokerProtocol
import NIOCore

/// A publish ready for delivery: encoded once into a complete WebSocket frame that every
/// subscriber's connection writes as it is (the buffer's storage is shared, never copied).
///
/// A class, immutable: every event loop and mailbox holds the same instance, so handing it on
/// costs one reference count (on one cache line) instead of one per field.
final class OutboundMessage: Sendable {
    let topic: String
    /// Levels of `topic`, split once per publish for trie matching on every event loop.
    let levels: [Substring]
    /// Journal offset for retained messages.
    let offset: UInt64?
    /// The complete frame: header and body.
    let frame: ByteBuffer

    /// A message whose frame is already encoded.
    init(topic: String, levels: [Substring], offset: UInt64?, frame: ByteBuffer) {
        self.topic = topic
        self.levels = levels
        self.offset = offset
        self.frame = frame
    }

    init(
        topic: String, levels: [Substring]? = nil, payload: ByteBuffer, isBinary: Bool, offset: UInt64?,
        replay: Bool = false, allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = levels ?? Topic.levels(of: topic)
        self.offset = offset
        self.frame = Self.encodeFrame(
            topic: topic, payload: payload, isBinary: isBinary, offset: offset, replay: replay, allocator: allocator)
    }

    static func encodeFrame(
        topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64?, replay: Bool, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let capacity = payload.readableBytes + topic.utf8.count + 64
        if isBinary {
            return ServerFrame.encode(.binary, allocator: allocator, bodyCapacity: capacity) { buffer in
                BinaryCodec.encodeMessage(topic: topic, payload: payload, offset: offset, replay: replay, into: &buffer)
            }
        }
        return ServerFrame.encode(.text, allocator: allocator, bodyCapacity: capacity) { buffer in
            ServerMessageEncoder.message(topic: topic, data: payload, offset: offset, replay: replay, into: &buffer)
        }
    }
}
