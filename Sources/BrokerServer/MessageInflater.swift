import CZlib
import NIOCore

/// Inflates one permessage-deflate message (RFC 7692 §7.2.2) frame by frame, into a buffer
/// that may not grow past a limit: inflation stops as soon as the limit is crossed, so a
/// decompression bomb costs at most the limit plus one output chunk.
///
/// Confined to its connection's event loop. The broker asks every client for
/// `client_no_context_takeover`, so an inflater lives only while a message arrives.
final class MessageInflater {
    enum Outcome: Equatable {
        case ok
        /// The output would exceed the limit.
        case tooBig
        /// Not a valid deflate stream.
        case corrupt
    }

    private static let chunkBytes = 64 * 1024
    private static let messageTail = ByteBuffer(bytes: [0x00, 0x00, 0xFF, 0xFF])
    private let stream: UnsafeMutablePointer<z_stream>

    /// `windowBits`: the client's window (9...15; zlib cannot inflate less than 9 reliably, as
    /// its own deflate writes 9 when asked for 8).
    init?(windowBits: Int) {
        stream = .allocate(capacity: 1)
        stream.initialize(to: z_stream())
        guard czlib_inflate_init_raw(stream, Int32(max(9, min(15, windowBits)))) == Z_OK else {
            stream.deinitialize(count: 1)
            stream.deallocate()
            return nil
        }
    }

    deinit {
        inflateEnd(stream)
        stream.deinitialize(count: 1)
        stream.deallocate()
    }

    /// Inflates one frame's payload, appending to `output`, which must stay within `limit`
    /// readable bytes.
    func inflate(_ input: ByteBuffer, into output: inout ByteBuffer, limit: Int) -> Outcome {
        guard input.readableBytes > 0 else { return .ok }
        return input.withUnsafeReadableBytes { source in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress!.assumingMemoryBound(to: Bytef.self))
            stream.pointee.avail_in = UInt32(source.count)
            defer {
                stream.pointee.next_in = nil
                stream.pointee.avail_in = 0
            }
            return drain(into: &output, limit: limit)
        }
    }

    /// Ends the message: inflates the `00 00 ff ff` that the sender removed (§7.2.2).
    func finish(into output: inout ByteBuffer, limit: Int) -> Outcome {
        inflate(Self.messageTail, into: &output, limit: limit)
    }

    private func drain(into output: inout ByteBuffer, limit: Int) -> Outcome {
        while true {
            // One byte past the limit is enough to know it is crossed.
            let room = max(0, limit - output.readableBytes) + 1
            let chunk = min(room, Self.chunkBytes)
            output.reserveCapacity(minimumWritableBytes: chunk)
            var produced = 0
            let result = output.withUnsafeMutableWritableBytes { target -> Int32 in
                stream.pointee.next_out = target.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.pointee.avail_out = UInt32(chunk)
                let result = CZlib.inflate(stream, Z_SYNC_FLUSH)
                produced = chunk - Int(stream.pointee.avail_out)
                return result
            }
            output.moveWriterIndex(forwardBy: produced)
            if output.readableBytes > limit { return .tooBig }
            switch result {
            case Z_OK:
                if stream.pointee.avail_in == 0 && stream.pointee.avail_out > 0 { return .ok }
            case Z_BUF_ERROR:
                // No progress possible: either all input is used or (never here) no room.
                if stream.pointee.avail_in == 0 { return .ok }
                if stream.pointee.avail_out > 0 { return .corrupt }
            case Z_STREAM_END:
                // The sender ended the deflate stream (BFINAL); what follows in this message,
                // such as the tail, belongs to no block. Start afresh for the next message.
                inflateReset(stream)
                return .ok
            default:
                return .corrupt
            }
        }
    }
}
