import BrokerProtocol
import NIOCore
import NIOWebSocket
import Testing

@testable import BrokerServer

/// Inbound permessage-deflate in `MessageAssembler`: inflation fragment by fragment, the size
/// limit on inflated bytes, and RSV1's rules.
@Suite struct CompressedMessageAssemblerTests {
    let mask: WebSocketMaskingKey = [1, 2, 3, 4]
    static let agreement = PerMessageDeflate.negotiate(headerLines: ["permessage-deflate"])!

    func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false, rsv2: Bool = false) -> WebSocketFrame {
        var data = ByteBuffer(bytes: bytes)
        data.webSocketMask(mask)
        return WebSocketFrame(fin: fin, rsv1: rsv1, rsv2: rsv2, opcode: opcode, maskKey: mask, data: data)
    }

    func failureCode(_ outcome: MessageAssembler.Outcome) -> UInt16? {
        if case .fail(let code, _) = outcome { return code }
        return nil
    }

    static func deflated(_ bytes: [UInt8]) -> [UInt8] {
        var output = ByteBuffer()
        #expect(MessageDeflater(level: 6)!.compress(ByteBuffer(bytes: bytes), into: &output))
        return Array(output.readableBytesView)
    }

    @Test func wholeCompressedTextMessage() {
        var assembler = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        let text = String(repeating: "héllo wörld ", count: 20)
        let outcome = assembler.receive(frame(.text, Self.deflated(Array(text.utf8)), rsv1: true))
        #expect(outcome == .message(opcode: .text, payload: ByteBuffer(string: text)))
        // The next message starts from a fresh inflater, and plain messages still work.
        #expect(assembler.receive(frame(.text, Self.deflated(Array("again".utf8)), rsv1: true)) == .message(opcode: .text, payload: ByteBuffer(string: "again")))
        #expect(assembler.receive(frame(.binary, [1, 2, 3])) == .message(opcode: .binary, payload: ByteBuffer(bytes: [1, 2, 3])))
    }

    @Test func fragmentedCompressedMessageWithInterleavedPing() {
        var assembler = MessageAssembler(maxMessageBytes: 10_000, deflate: Self.agreement)
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let compressed = Self.deflated(payload)
        let third = compressed.count / 3
        #expect(assembler.receive(frame(.binary, Array(compressed[..<third]), fin: false, rsv1: true)) == .needMore)
        #expect(assembler.receive(frame(.ping, [7])) == .control(opcode: .ping, payload: ByteBuffer(bytes: [7])))
        #expect(assembler.receive(frame(.continuation, Array(compressed[third..<(2 * third)]), fin: false)) == .needMore)
        #expect(assembler.receive(frame(.continuation, [], fin: false)) == .needMore)
        #expect(assembler.receive(frame(.continuation, Array(compressed[(2 * third)...]))) == .message(opcode: .binary, payload: ByteBuffer(bytes: payload)))
    }

    @Test func decompressionBombClosesWith1009() {
        var assembler = MessageAssembler(maxMessageBytes: 64 * 1024, deflate: Self.agreement)
        let bomb = Self.deflated([UInt8](repeating: 0, count: 4 << 20))  // 4 MiB of zeros, ~4 KiB compressed
        #expect(bomb.count < 10_000)
        #expect(failureCode(assembler.receive(frame(.binary, bomb, rsv1: true))) == 1009)
        // Fragmented: fails on the fragment that crosses the limit.
        var fragmented = MessageAssembler(maxMessageBytes: 64 * 1024, deflate: Self.agreement)
        #expect(failureCode(fragmented.receive(frame(.binary, Array(bomb.prefix(2000)), fin: false, rsv1: true))) == 1009)
        // Exactly at the limit is fine.
        var exact = MessageAssembler(maxMessageBytes: 5000, deflate: Self.agreement)
        let full = [UInt8](repeating: 7, count: 5000)
        #expect(exact.receive(frame(.binary, Self.deflated(full), rsv1: true)) == .message(opcode: .binary, payload: ByteBuffer(bytes: full)))
    }

    @Test func rsv1WithoutTheExtensionIs1002() {
        var assembler = MessageAssembler(maxMessageBytes: 1000)
        #expect(failureCode(assembler.receive(frame(.text, Self.deflated(Array("hi".utf8)), rsv1: true))) == 1002)
    }

    @Test func rsv1OnlyOnTheFirstFrameOfADataMessage() {
        var onPing = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(onPing.receive(frame(.ping, [], rsv1: true))) == 1002)
        var onClose = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(onClose.receive(frame(.connectionClose, [0x03, 0xE8], rsv1: true))) == 1002)
        var onContinuation = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(onContinuation.receive(frame(.text, Array("ab".utf8), fin: false)) == .needMore)
        #expect(failureCode(onContinuation.receive(frame(.continuation, Array("c".utf8), rsv1: true))) == 1002)
        var rsv2 = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(rsv2.receive(frame(.text, Array("ab".utf8), rsv2: true))) == 1002)
    }

    @Test func invalidDataAndInvalidUTF8AfterInflating() {
        var corrupt = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(corrupt.receive(frame(.binary, [0xFF, 0xFF, 0xFF, 0xFF], rsv1: true))) == 1007)
        var badText = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(badText.receive(frame(.text, Self.deflated([0x61, 0xC0, 0x80]), rsv1: true))) == 1007)
        var truncatedText = MessageAssembler(maxMessageBytes: 1000, deflate: Self.agreement)
        #expect(failureCode(truncatedText.receive(frame(.text, Self.deflated([0xE2, 0x82]), rsv1: true))) == 1007)
    }

    @Test func deflaterOutputIsTheSameForEveryMessageStart() {
        let deflater = MessageDeflater(level: 6)!
        let message = ByteBuffer(string: String(repeating: "{\"op\":\"message\",\"topic\":\"a/b\"}", count: 10))
        var first = ByteBuffer()
        var second = ByteBuffer()
        #expect(deflater.compress(message, into: &first))
        #expect(deflater.compress(ByteBuffer(string: "something else entirely, to dirty the state"), into: &second))
        second.clear()
        #expect(deflater.compress(message, into: &second))
        #expect(first == second)
        #expect(first.readableBytes < message.readableBytes)
    }
}
