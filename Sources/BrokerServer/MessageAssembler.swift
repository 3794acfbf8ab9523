import BrokerProtocol
import NIOCore
import NIOWebSocket

/// Turns client frames into whole messages and enforces RFC 6455's rules on them: masking,
/// reserved bits, reserved opcodes, fragmentation order, UTF-8 in text messages (checked as each
/// fragment arrives, so an invalid message fails fast) and the message size limit.
///
/// With permessage-deflate agreed (RFC 7692), a message whose first frame has RSV1 set is
/// inflated fragment by fragment; the size limit applies to the inflated bytes, so a
/// decompression bomb fails with 1009 as soon as it crosses the limit.
///
/// A plain value with no I/O: the connection handler feeds frames and acts on the outcome.
struct MessageAssembler {
    enum Outcome: Equatable {
        /// A fragment was taken; the message is not complete yet.
        case needMore
        /// A whole data message.
        case message(opcode: WebSocketOpcode, payload: ByteBuffer)
        /// A control frame (ping, pong, close), unmasked.
        case control(opcode: WebSocketOpcode, payload: ByteBuffer)
        /// The peer broke the protocol: close with this code.
        case fail(code: UInt16, reason: String)
    }

    let maxMessageBytes: Int
    /// The permessage-deflate agreement, if the client offered it and the broker accepted.
    let deflate: PerMessageDeflate.Agreement?
    private var opcode: WebSocketOpcode?
    private var fragments = ByteBuffer()
    private var utf8 = IncrementalUTF8Validator()
    /// Set while a compressed message arrives; released at its end (the client was asked for
    /// `client_no_context_takeover`, so nothing carries over to the next message).
    private var inflater: MessageInflater?

    init(maxMessageBytes: Int, deflate: PerMessageDeflate.Agreement? = nil) {
        self.maxMessageBytes = maxMessageBytes
        self.deflate = deflate
    }

    mutating func receive(_ frame: WebSocketFrame) -> Outcome {
        guard frame.maskKey != nil else { return .fail(code: 1002, reason: "client frames must be masked") }
        let reserved = frame.reservedBits
        guard !reserved.contains(.rsv2), !reserved.contains(.rsv3) else {
            return .fail(code: 1002, reason: "reserved bits set without an extension")
        }
        let rsv1 = reserved.contains(.rsv1)
        if rsv1 {
            guard deflate != nil else { return .fail(code: 1002, reason: "RSV1 set without permessage-deflate") }
            // RFC 7692 §6: RSV1 marks a compressed message on its first frame only.
            guard frame.opcode == .text || frame.opcode == .binary else {
                return .fail(code: 1002, reason: "RSV1 set on a control frame or continuation")
            }
        }

        switch frame.opcode {
        case .ping, .pong, .connectionClose:
            // The frame decoder already refused fragmented or oversized control frames.
            return .control(opcode: frame.opcode, payload: frame.unmaskedData)

        case .text, .binary:
            guard opcode == nil else { return .fail(code: 1002, reason: "new message before the previous one ended") }
            if frame.fin && !rsv1 {
                return complete(opcode: frame.opcode, payload: frame.unmaskedData)
            }
            opcode = frame.opcode
            fragments.clear()
            utf8.reset()
            if rsv1 {
                guard let inflater = MessageInflater(windowBits: deflate!.clientMaxWindowBits) else {
                    self.reset()
                    return .fail(code: 1011, reason: "no memory to inflate")
                }
                self.inflater = inflater
                return appendCompressed(frame.unmaskedData, fin: frame.fin)
            }
            return append(frame.unmaskedData, fin: false)

        case .continuation:
            guard opcode != nil else { return .fail(code: 1002, reason: "continuation without a message to continue") }
            if inflater != nil { return appendCompressed(frame.unmaskedData, fin: frame.fin) }
            return append(frame.unmaskedData, fin: frame.fin)

        default:
            return .fail(code: 1002, reason: "reserved opcode")
        }
    }

    /// Inflates one fragment of a compressed message into `fragments`, then checks the size
    /// limit and the UTF-8 of what it added.
    private mutating func appendCompressed(_ data: ByteBuffer, fin: Bool) -> Outcome {
        guard let opcode, let inflater else { return .fail(code: 1011, reason: "internal error") }
        let start = fragments.readableBytes
        var outcome = inflater.inflate(data, into: &fragments, limit: maxMessageBytes)
        if outcome == .ok && fin { outcome = inflater.finish(into: &fragments, limit: maxMessageBytes) }
        switch outcome {
        case .ok: break
        case .tooBig:
            self.reset()
            return .fail(code: 1009, reason: "message too big")
        case .corrupt:
            self.reset()
            return .fail(code: 1007, reason: "invalid compressed data")
        }
        if opcode == .text {
            let valid = fragments.withUnsafeReadableBytes { utf8.feed(UnsafeRawBufferPointer(rebasing: $0[start...])) }
            guard valid, !fin || utf8.isComplete else {
                self.reset()
                return .fail(code: 1007, reason: "invalid UTF-8 in text message")
            }
        }
        guard fin else { return .needMore }
        let payload = fragments
        self.reset()
        return .message(opcode: opcode, payload: payload)
    }

    private mutating func append(_ data: ByteBuffer, fin: Bool) -> Outcome {
        guard let opcode else { return .fail(code: 1011, reason: "internal error") }
        guard fragments.readableBytes + data.readableBytes <= maxMessageBytes else {
            self.reset()
            return .fail(code: 1009, reason: "message too big")
        }
        if opcode == .text {
            let valid = data.withUnsafeReadableBytes { utf8.feed($0) }
            guard valid else {
                self.reset()
                return .fail(code: 1007, reason: "invalid UTF-8 in text message")
            }
        }
        var data = data
        fragments.writeBuffer(&data)
        guard fin else { return .needMore }
        if opcode == .text && !utf8.isComplete {
            self.reset()
            return .fail(code: 1007, reason: "invalid UTF-8 in text message")
        }
        let payload = fragments
        self.reset()
        return .message(opcode: opcode, payload: payload)
    }

    private mutating func complete(opcode: WebSocketOpcode, payload: ByteBuffer) -> Outcome {
        guard payload.readableBytes <= maxMessageBytes else { return .fail(code: 1009, reason: "message too big") }
        if opcode == .text {
            let valid = payload.withUnsafeReadableBytes { UTF8Validator.isValid($0) }
            guard valid else { return .fail(code: 1007, reason: "invalid UTF-8 in text message") }
        }
        return .message(opcode: opcode, payload: payload)
    }

    private mutating func reset() {
        opcode = nil
        fragments = ByteBuffer()
        utf8.reset()
        inflater = nil
    }
}

/// RFC 6455 §7.4 rules for the status code and reason of a received close frame.
enum CloseFrame {
    /// What to answer a peer's close frame with: the code to echo, or a protocol failure.
    static func validate(_ payload: ByteBuffer) -> MessageAssembler.Outcome? {
        var payload = payload
        if payload.readableBytes == 0 { return nil }
        guard let code = payload.readInteger(as: UInt16.self) else {
            return .fail(code: 1002, reason: "close frame with a one-byte body")
        }
        guard isValidReceivedCode(code) else { return .fail(code: 1002, reason: "invalid close code \(code)") }
        let validReason = payload.withUnsafeReadableBytes { UTF8Validator.isValid($0) }
        guard validReason else { return .fail(code: 1007, reason: "close reason is not UTF-8") }
        return nil
    }

    /// Codes a peer may send: 1000-1003, 1007-1011 (and 1012-1014 registered since), 3000-4999.
    static func isValidReceivedCode(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014: return true
        case 3000...4999: return true
        default: return false
        }
    }
}
