import NIOCore
import NIOEmbedded
import NIOWebSocket

/// One frame the broker wrote (server frames are unmasked, whole).
struct WrittenFrame {
    var first: UInt8
    var payload: ByteBuffer

    var opcode: UInt8 { first & 0x0F }
    var rsv1: Bool { first & 0x40 != 0 }
    var text: String { String(buffer: payload) }
}

extension EmbeddedChannel {
    /// Sends the client's masked text frame (`writeInbound`: the handlers run now).
    func sendClientText(_ text: String) throws {
        let key: WebSocketMaskingKey = [1, 2, 3, 4]
        var data = ByteBuffer(string: text)
        data.webSocketMask(key)
        try writeInbound(WebSocketFrame(fin: true, opcode: .text, maskKey: key, data: data))
    }

    /// Every frame in the buffers the broker wrote since the last call, in order.
    func readServerFrames() throws -> [WrittenFrame] {
        var frames: [WrittenFrame] = []
        while var buffer = try readOutbound(as: ByteBuffer.self) {
            while buffer.readableBytes > 0 {
                let first = buffer.readInteger(as: UInt8.self)!
                var length = Int(buffer.readInteger(as: UInt8.self)! & 0x7F)
                if length == 126 { length = Int(buffer.readInteger(as: UInt16.self)!) }
                if length == 127 { length = Int(buffer.readInteger(as: UInt64.self)!) }
                frames.append(WrittenFrame(first: first, payload: buffer.readSlice(length: length)!))
            }
        }
        return frames
    }
}
