import BrokerProtocol
import NIOCore

/// Makes the permessage-deflate twin (RSV1 set, body compressed) of a complete server frame.
///
/// Wraps one `MessageDeflater`, so it has that deflater's confinement: one per event loop (in
/// its `FanoutShard`) and one behind a lock for the journal writer thread.
/// `package` only because `OutboundMessage`'s package init names it; its members stay internal.
package struct FrameCompressor: Sendable {
    let deflater: MessageDeflater
    let thresholdBytes: Int

    init?(level: Int, thresholdBytes: Int) {
        guard let deflater = MessageDeflater(level: level) else { return nil }
        self.deflater = deflater
        self.thresholdBytes = thresholdBytes
    }

    /// The compressed frame for `frame`, or nil when its body is below the threshold, when
    /// deflate would not make it smaller, or on a zlib failure: then the plain frame serves.
    func compressed(_ frame: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard let (opcode, body) = ServerFrame.parse(frame), body.readableBytes >= thresholdBytes else { return nil }
        var succeeded = false
        let compressed = ServerFrame.encode(
            opcode, rsv1: true, allocator: allocator, bodyCapacity: deflater.bound(body.readableBytes)
        ) { buffer in
            succeeded = deflater.compress(body, into: &buffer)
        }
        guard succeeded, compressed.readableBytes < frame.readableBytes else { return nil }
        return compressed
    }
}
