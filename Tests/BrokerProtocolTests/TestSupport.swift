import NIOCore
import Testing

@testable import BrokerProtocol

extension ByteBuffer {
    /// The readable bytes as an array.
    var bytes: [UInt8] { Array(readableBytesView) }
    /// The readable bytes decoded as UTF-8.
    var text: String { String(buffer: self) }
}

/// Parses a text control frame.
func parse(_ text: String, limits: RequestLimits = .init()) -> Result<ControlRequest, RequestError> {
    ControlRequest.parseText(ByteBuffer(string: text), limits: limits)
}

/// Parses a text control frame given as raw bytes (possibly not UTF-8).
func parse(bytes: [UInt8]) -> Result<ControlRequest, RequestError> {
    ControlRequest.parseText(ByteBuffer(bytes: bytes))
}

/// Expects `result` to be a failure with `code` and, when given, the id's JSON text (`nil` means
/// "no id" when `checkID` is true).
func expectFailure(
    _ result: Result<ControlRequest, RequestError>, _ code: ErrorCode, id: String?, checkID: Bool = true,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    switch result {
    case .success(let request):
        Issue.record("expected \(code.rawValue), got success: \(request.request)", sourceLocation: sourceLocation)
    case .failure(let error):
        #expect(error.code == code, "message: \(error.message)", sourceLocation: sourceLocation)
        #expect(!error.message.isEmpty, sourceLocation: sourceLocation)
        if checkID {
            #expect(error.id?.json == id, sourceLocation: sourceLocation)
        }
    }
}

/// Returns the request of a successful parse, recording an issue otherwise.
func expectSuccess(
    _ result: Result<ControlRequest, RequestError>, sourceLocation: SourceLocation = #_sourceLocation
) -> ControlRequest? {
    switch result {
    case .success(let request): return request
    case .failure(let error):
        Issue.record("expected success, got \(error.code.rawValue): \(error.message)", sourceLocation: sourceLocation)
        return nil
    }
}

/// A small deterministic generator so that randomized tests are reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A minimal RFC 6455 frame header reader for checking what `ServerFrame` writes.
struct DecodedFrame {
    var fin: Bool
    var rsv1: Bool
    var rsv2: Bool
    var rsv3: Bool
    var opcode: UInt8
    var masked: Bool
    var headerLength: Int
    var payload: [UInt8]

    init?(_ buffer: ByteBuffer) {
        let bytes = buffer.bytes
        guard bytes.count >= 2 else { return nil }
        fin = bytes[0] & 0x80 != 0
        rsv1 = bytes[0] & 0x40 != 0
        rsv2 = bytes[0] & 0x20 != 0
        rsv3 = bytes[0] & 0x10 != 0
        opcode = bytes[0] & 0x0F
        masked = bytes[1] & 0x80 != 0
        var length = Int(bytes[1] & 0x7F)
        var index = 2
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            index = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            var value: UInt64 = 0
            for byte in bytes[2..<10] { value = value << 8 | UInt64(byte) }
            length = Int(value)
            index = 10
        }
        if masked { index += 4 }
        headerLength = index
        guard bytes.count == index + length else { return nil }
        payload = Array(bytes[index...])
    }
}
