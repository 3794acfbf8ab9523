import BrokerProtocol
import NIOCore

/// A publish ready for delivery: encoded once into a complete WebSocket frame that every
/// subscriber's connection writes as it is (the buffer's storage is shared, never copied), and,
/// when some connection negotiated permessage-deflate, compressed once into a second frame that
/// every such connection shares.
///
/// A class, immutable: every event loop and mailbox holds the same instance, so handing it on
/// costs one reference count (on one cache line) instead of one per field.
///
/// `package`, with its levels, frame and encoding init: the microbenchmarks
/// (Benchmarks/TopicMatching) build messages the way a publish does.
package final class OutboundMessage: Sendable {
    let topic: String
    /// Levels of `topic`, split once per publish for trie matching on every event loop.
    package let levels: [Substring]
    /// Journal offset for retained messages.
    let offset: UInt64?
    /// The complete frame: header and body.
    package let frame: ByteBuffer
    /// The same message compressed (RSV1 set), or nil: no compressor was given (no connection
    /// had negotiated compression), the body is under the threshold, or deflate did not help.
    let compressedFrame: ByteBuffer?

    /// A message whose frame is already encoded; `compressor`: pass one only when some
    /// connection negotiated compression.
    init(
        topic: String, levels: [Substring], offset: UInt64?, frame: ByteBuffer, compressor: FrameCompressor?,
        allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = levels
        self.offset = offset
        self.frame = frame
        self.compressedFrame = compressor?.compressed(frame, allocator: allocator)
    }

    /// `compressor`: pass one only when some connection negotiated compression.
    package init(
        topic: String, levels: [Substring]? = nil, payload: ByteBuffer, isBinary: Bool, offset: UInt64?,
        replay: Bool = false, compressor: FrameCompressor? = nil, allocator: ByteBufferAllocator
    ) {
        self.topic = topic
        self.levels = levels ?? Topic.levels(of: topic)
        self.offset = offset
        self.frame = Self.encodeFrame(
            topic: topic, payload: payload, isBinary: isBinary, offset: offset, replay: replay, allocator: allocator)
        self.compressedFrame = compressor?.compressed(frame, allocator: allocator)
    }

    static func encodeFrame(
        topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64?, replay: Bool, allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        ServerFrame.encode(
            isBinary ? .binary : .text, allocator: allocator, bodyCapacity: bodyBytesEstimate(topic: topic, payload: payload)
        ) { buffer in
            encodeBody(topic: topic, payload: payload, isBinary: isBinary, offset: offset, replay: replay, into: &buffer)
        }
    }

    /// Appends the frame `encodeFrame` makes to `buffer` (a replay page: many frames, one buffer).
    static func appendFrame(
        topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64?, replay: Bool, to buffer: inout ByteBuffer
    ) {
        ServerFrame.append(
            isBinary ? .binary : .text, to: &buffer, expectedBodyBytes: bodyBytesEstimate(topic: topic, payload: payload)
        ) { buffer in
            encodeBody(topic: topic, payload: payload, isBinary: isBinary, offset: offset, replay: replay, into: &buffer)
        }
    }

    /// About what a message frame's body takes: the payload, the topic, and room for the envelope
    /// with the longest offset (JSON keys and quotes, or the binary layout's header).
    static func bodyBytesEstimate(topic: String, payload: ByteBuffer) -> Int {
        payload.readableBytes + topic.utf8.count + 64
    }

    private static func encodeBody(
        topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64?, replay: Bool, into buffer: inout ByteBuffer
    ) {
        if isBinary {
            BinaryCodec.encodeMessage(topic: topic, payload: payload, offset: offset, replay: replay, into: &buffer)
        } else {
            ServerMessageEncoder.message(topic: topic, data: payload, offset: offset, replay: replay, into: &buffer)
        }
    }
}
