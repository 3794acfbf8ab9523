import BrokerProtocol
import FuzzSupport
import NIOCore
import NIOWebSocket

@testable import BrokerServer

// Message assembly: a sequence of client frames through `MessageAssembler`, with or without a
// permessage-deflate agreement (then RSV1 frames are inflated), and close frames through
// `CloseFrame.validate`.
//
// Input: one byte choosing the agreement (0: none; 1...8: `client_max_window_bits` 8...15, as
// the offer a client sends), one byte for the message limit (1 + 64 * n bytes), then frames of
// one header byte (FIN 0x80, RSV1 0x40, RSV2 0x20, RSV3 0x10, opcode in the low nibble), one
// length byte (255: a 16-bit length follows) and the payload, masked here as a client would.
//
// Invariants: a message is within the limit; a text message is valid UTF-8; an uncompressed
// message is exactly its fragments' payloads in order. The assembler is not fed after it fails
// (the connection closes then).

private let maskKey: WebSocketMaskingKey = [0x37, 0xFA, 0x21, 0x3D]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let choice = input.byte() & 0x0F
    let agreement: PerMessageDeflate.Agreement?
    switch choice {
    case 0: agreement = nil
    case 1...8: agreement = PerMessageDeflate.negotiate(headerLines: ["permessage-deflate; client_max_window_bits=\(7 + Int(choice))"])
    default: agreement = PerMessageDeflate.negotiate(headerLines: ["permessage-deflate"])
    }
    if choice != 0 { fuzzCheck(agreement != nil, "a plain offer was declined") }
    let limit = 1 + Int(input.byte()) * 64
    var assembler = MessageAssembler(maxMessageBytes: limit, deflate: agreement)

    // The message being received, as the frames carry it: (opcode, payload, compressed).
    var current: (opcode: WebSocketOpcode, payload: [UInt8], compressed: Bool)?
    var frames = 0
    while !input.isAtEnd, frames < 256 {
        frames += 1
        let header = input.byte()
        var length = Int(input.byte())
        if length == 255 { length = Int(input.uint16()) }
        let payload = Array(input.take(length))
        var masked = ByteBuffer(bytes: payload)
        masked.webSocketMask(maskKey)
        let opcode = WebSocketOpcode(encodedWebSocketOpcode: header & 0x0F)!
        let frame = WebSocketFrame(
            fin: header & 0x80 != 0, rsv1: header & 0x40 != 0, rsv2: header & 0x20 != 0, rsv3: header & 0x10 != 0,
            opcode: opcode, maskKey: maskKey, data: masked)

        switch opcode {
        case .text, .binary: current = (opcode, payload, header & 0x40 != 0)
        case .continuation: current?.payload += payload
        default: break
        }

        switch assembler.receive(frame) {
        case .needMore:
            break
        case .message(let messageOpcode, let message):
            fuzzCheck(message.readableBytes <= limit, "a message of \(message.readableBytes) bytes passed the limit \(limit)")
            fuzzCheck(messageOpcode == .text || messageOpcode == .binary, "a data message with opcode \(messageOpcode)")
            if messageOpcode == .text {
                fuzzCheck(message.withUnsafeReadableBytes { UTF8Validator.isValid($0) }, "a text message is not UTF-8")
            }
            if let sent = current {
                fuzzCheck(sent.opcode == messageOpcode, "opcode \(messageOpcode), the first frame said \(sent.opcode)")
                if !sent.compressed {
                    fuzzCheck(Array(message.readableBytesView) == sent.payload, "the message is not its fragments")
                }
            } else {
                fuzzCheck(false, "a message without a first frame")
            }
            current = nil
        case .control(let controlOpcode, let body):
            fuzzCheck(Array(body.readableBytesView) == payload, "a control frame's payload changed")
            if controlOpcode == .connectionClose { _ = CloseFrame.validate(body) }
        case .fail(let code, let reason):
            fuzzCheck([1002, 1007, 1009].contains(code), "close code \(code) (\(reason))")
            return 0
        }
    }
    return 0
}
