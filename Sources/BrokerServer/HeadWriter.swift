import NIOCore

/// Sits at the head of a WebSocket connection's pipeline so that the connection can write its
/// pre-encoded frames (plain `ByteBuffer`s) straight to the socket, past the handlers that NIO's
/// upgrader installs. This is the fan-out fast path: no `WebSocketFrame` wrapping, no encoder
/// hop, one retain of the shared buffer per subscriber.
final class HeadWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = ByteBuffer
}
