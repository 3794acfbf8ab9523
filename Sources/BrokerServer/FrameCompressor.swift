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

    /// Adds what this compressor has compressed so far to `counters` (on the compressor's loop, or
    /// under the lock that guards it).
    func count(into counters: inout ShardCounters) {
        counters.compressionInputBytes &+= deflater.usedInputBytes
        counters.compressionOutputBytes &+= deflater.usedOutputBytes
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
        deflater.usedInputBytes &+= frame.readableBytes
        deflater.usedOutputBytes &+= compressed.readableBytes
        return compressed
    }
}
