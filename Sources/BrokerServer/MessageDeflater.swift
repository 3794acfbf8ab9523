import CZlib
import NIOCore

/// Compresses whole messages for permessage-deflate (RFC 7692 §7.2.1) with one raw-deflate
/// stream that is reset before every message. A reset stream gives byte-identical output for
/// the same input, so one compressed frame is valid for every client that agreed to
/// `server_no_context_takeover`.
///
/// Not thread-safe: each event loop's `FanoutShard` owns one, and the broker keeps one behind a
/// lock for the journal writer thread.
final class MessageDeflater: @unchecked Sendable {
    private let stream: UnsafeMutablePointer<z_stream>
    /// Bytes of the message bodies whose compressed form was used, and of those compressed forms
    /// (`broker_compression_input_bytes_total`/`_output_`). Plain integers: the deflater's own
    /// confinement (its loop, or the journal writer's lock) covers them.
    var usedInputBytes = 0
    var usedOutputBytes = 0

    /// nil if zlib cannot set up the stream (out of memory, bad level).
    init?(level: Int, windowBits: Int = 15, memoryLevel: Int = 8) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard czlib_deflate_init_raw(stream, Int32(level), Int32(windowBits), Int32(memoryLevel)) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
    }

    deinit {
        deflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Most bytes `compress` appends for `count` input bytes.
    func bound(_ count: Int) -> Int {
        Int(deflateBound(stream, UInt(count))) + 6
    }

    /// Appends `input` compressed as one message: fresh state, a sync flush, and the flush's
    /// trailing `00 00 ff ff` removed (§7.2.1). Returns false (appending nothing) on failure.
    func compress(_ input: ByteBuffer, into output: inout ByteBuffer) -> Bool {
        guard deflateReset(stream) == Z_OK else { return false }
        let capacity = bound(input.readableBytes)
        output.reserveCapacity(minimumWritableBytes: capacity)
        var written = 0
        let result = input.withUnsafeReadableBytes { source -> Int32 in
            output.withUnsafeMutableWritableBytes { target -> Int32 in
                stream.pointee.next_in = UnsafeMutablePointer(
                    mutating: source.baseAddress?.assumingMemoryBound(to: Bytef.self))
                stream.pointee.avail_in = UInt32(source.count)
                stream.pointee.next_out = target.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = UInt32(capacity)
                let result = deflate(stream, Z_SYNC_FLUSH)
                written = capacity - Int(stream.pointee.avail_out)
                return result
            }
        }
        guard result == Z_OK, stream.pointee.avail_in == 0, stream.pointee.avail_out > 0, written >= 4 else { return false }
        let start = output.writerIndex
        output.moveWriterIndex(forwardBy: written)
        guard output.getBytes(at: start + written - 4, length: 4) == [0x00, 0x00, 0xFF, 0xFF] else {
            output.moveWriterIndex(to: start)
            return false
        }
        output.moveWriterIndex(to: start + written - 4)
        return true
    }
}
