import NIOCore
import NIOWebSocket
import Testing

@testable import BrokerServer

@Suite struct MessageAssemblerTests {
    let mask: WebSocketMaskingKey = [1, 2, 3, 4]

    func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, masked: Bool = true, rsv1: Bool = false) -> WebSocketFrame {
        var data = ByteBuffer(bytes: bytes)
        if masked { data.webSocketMask(mask) }
        return WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, maskKey: masked ? mask : nil, data: data)
    }

    func failureCode(_ outcome: MessageAssembler.Outcome) -> UInt16? {
        if case .fail(let code, _) = outcome { return code }
        return nil
    }

    @Test func wholeTextMessage() {
        var assembler = MessageAssembler(maxMessageBytes: 100)
        let outcome = assembler.receive(frame(.text, Array("héllo".utf8)))
        #expect(outcome == .message(opcode: .text, payload: ByteBuffer(string: "héllo")))
    }

    @Test func fragmentsWithInterleavedPing() {
        var assembler = MessageAssembler(maxMessageBytes: 100)
        #expect(assembler.receive(frame(.binary, [1, 2], fin: false)) == .needMore)
        #expect(assembler.receive(frame(.ping, [9])) == .control(opcode: .ping, payload: ByteBuffer(bytes: [9])))
        #expect(assembler.receive(frame(.continuation, [3], fin: false)) == .needMore)
        #expect(assembler.receive(frame(.continuation, [4])) == .message(opcode: .binary, payload: ByteBuffer(bytes: [1, 2, 3, 4])))
    }

    @Test func utf8SplitAcrossFragmentsIsAccepted() {
        var assembler = MessageAssembler(maxMessageBytes: 100)
        let bytes = Array("€".utf8)  // three bytes
        #expect(assembler.receive(frame(.text, [bytes[0]], fin: false)) == .needMore)
        #expect(assembler.receive(frame(.continuation, [bytes[1], bytes[2]])) == .message(opcode: .text, payload: ByteBuffer(string: "€")))
    }

    @Test func invalidUTF8FailsOnTheFragmentThatProvesIt() {
        var assembler = MessageAssembler(maxMessageBytes: 100)
        #expect(failureCode(assembler.receive(frame(.text, [0x61, 0xC0, 0x80], fin: false))) == 1007)
        var truncated = MessageAssembler(maxMessageBytes: 100)
        #expect(failureCode(truncated.receive(frame(.text, [0xE2, 0x82]))) == 1007)
    }

    @Test func protocolViolations() {
        var assembler = MessageAssembler(maxMessageBytes: 100)
        #expect(failureCode(assembler.receive(frame(.text, [0x61], masked: false))) == 1002)
        #expect(failureCode(assembler.receive(frame(.text, [0x61], rsv1: true))) == 1002)
        #expect(failureCode(assembler.receive(frame(.continuation, [0x61]))) == 1002)
        #expect(failureCode(assembler.receive(frame(WebSocketOpcode(encodedWebSocketOpcode: 3)!, []))) == 1002)
        #expect(failureCode(assembler.receive(frame(WebSocketOpcode(encodedWebSocketOpcode: 0xB)!, []))) == 1002)
        #expect(assembler.receive(frame(.text, [0x61], fin: false)) == .needMore)
        #expect(failureCode(assembler.receive(frame(.binary, [0x61]))) == 1002)
    }

    @Test func messageSizeLimitCountsAllFragments() {
        var assembler = MessageAssembler(maxMessageBytes: 4)
        #expect(assembler.receive(frame(.binary, [1, 2, 3], fin: false)) == .needMore)
        #expect(failureCode(assembler.receive(frame(.continuation, [4, 5]))) == 1009)
        var single = MessageAssembler(maxMessageBytes: 4)
        #expect(failureCode(single.receive(frame(.binary, [1, 2, 3, 4, 5]))) == 1009)
        #expect(single.receive(frame(.binary, [1, 2, 3, 4])) == .message(opcode: .binary, payload: ByteBuffer(bytes: [1, 2, 3, 4])))
    }

    static let closeCases: [(payload: [UInt8], expected: UInt16?)] = [
        ([], nil),
        ([0x03, 0xE8], nil),  // 1000
        ([0x0F, 0xA0], nil),  // 4000
        ([0x03], 1002),  // one byte
        ([0x03, 0xEC], 1002),  // 1004 reserved
        ([0x03, 0xED], 1002),  // 1005 must not be sent
        ([0x03, 0xEE], 1002),  // 1006 must not be sent
        ([0x03, 0xE7], 1002),  // 999
        ([0x13, 0x88], 1002),  // 5000
        ([0x03, 0xE8, 0xC0, 0x80], 1007),  // reason not UTF-8
    ]

    @Test(arguments: closeCases)
    func closeFrameValidation(payload: [UInt8], expected: UInt16?) {
        let outcome = CloseFrame.validate(ByteBuffer(bytes: payload))
        #expect(outcome.flatMap(failureCode) == expected)
    }
}
