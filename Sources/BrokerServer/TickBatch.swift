import NIOCore

/// The frames one event loop delivers on one topic between two flushes (one tick, or several
/// while a busy loop paces its flushes), back to back in one buffer.
///
/// A broadcast sends every subscriber of a topic the same frames in the same order, so instead of
/// one NIO write per frame per subscriber (each write touches the connection's channel, pipeline
/// and pending-write queue, and that dominated the fan-out profile), each frame is copied once per
/// loop into its topic's batch and each connection writes, at flush, one slice of the batch: the
/// contiguous run of frames it is owed. The slices share the batch's storage: no copy per
/// subscriber.
///
/// Confined to its shard's event loop. Once sliced, a batch takes no more frames (appending
/// would copy the storage the slices share); the shard starts a new one.
final class TickBatch {
    private(set) var buffer: ByteBuffer
    private(set) var isSliced = false

    init(allocator: ByteBufferAllocator, capacity: Int) {
        buffer = allocator.buffer(capacity: capacity)
    }

    var byteCount: Int { buffer.writerIndex }

    /// Appends `frame`; returns where it lies in the batch.
    func append(_ frame: ByteBuffer) -> Range<Int> {
        let start = buffer.writerIndex
        buffer.writeImmutableBuffer(frame)
        return start..<buffer.writerIndex
    }

    /// The bytes of `range`, sharing the batch's storage.
    func slice(_ range: Range<Int>) -> ByteBuffer {
        isSliced = true
        return buffer.getSlice(at: range.lowerBound, length: range.count)!
    }
}
