import NIOCore
import NIOEmbedded

/// Stands in for a socket whose peer reads as fast as the broker writes, at the head of an
/// EmbeddedChannel's pipeline, with NIO's writability rules: bytes written and not yet taken by
/// the kernel (flushed or not) count against the high-water mark, the channel turns unwritable
/// from inside the `write` that crosses it, and a flush that the kernel takes whole turns it
/// writable again from inside that `flush` (BaseSocketChannel.flushNow), not in a later tick.
final class FastReaderSocket: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let highWaterBytes: Int
    private(set) var bufferedBytes = 0
    /// Flushes that reached the socket, and how many turned the channel writable again.
    private(set) var flushes = 0
    private(set) var writableAgainInsideFlush = 0

    init(highWaterBytes: Int) {
        self.highWaterBytes = highWaterBytes
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        bufferedBytes += unwrapOutboundIn(data).readableBytes
        context.write(data, promise: promise)
        let channel = context.channel as! EmbeddedChannel
        if channel.isWritable, bufferedBytes > highWaterBytes {
            channel.isWritable = false
            context.fireChannelWritabilityChanged()
        }
    }

    func flush(context: ChannelHandlerContext) {
        flushes += 1
        context.flush()
        bufferedBytes = 0
        let channel = context.channel as! EmbeddedChannel
        if !channel.isWritable {
            channel.isWritable = true
            writableAgainInsideFlush += 1
            context.fireChannelWritabilityChanged()
        }
    }
}
