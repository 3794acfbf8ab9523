import BrokerProtocol
import FuzzSupport
import NIOCore

// Binary frames: `BinaryCodec.decodePublish` (what a client sends) and `decodeMessage` (what
// the client library reads from the broker).
//
// Invariant: a publish that decodes re-encodes to the same bytes (the flag bits that mean
// nothing aside), and decodes again to the same request.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBinary(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = FuzzInput(data, size)
    let frame = ByteBuffer(bytes: input.bytes)
    let limits = RequestLimits(maxTopicBytes: 64)

    if case .success(let parsed) = BinaryCodec.decodePublish(frame, limits: limits) {
        guard case .publish(let topic, let payload, let isBinary, let retain) = parsed.request else {
            fuzzCheck(false, "a binary frame decoded to something other than a publish")
            return 0
        }
        fuzzCheck(isBinary, "a binary publish came out as text")
        let ackID = parsed.id.map { id -> UInt32 in
            guard let number = UInt32(id.json) else {
                fuzzCheck(false, "binary request id \(id.json) is not a 32-bit number")
                return 0
            }
            return number
        }
        var encoded = ByteBuffer()
        BinaryCodec.encodePublish(topic: topic, payload: payload, retain: retain, ackID: ackID, into: &encoded)
        var original = Array(input.bytes)
        original[1] &= BinaryCodec.retainFlag | BinaryCodec.ackFlag
        fuzzCheck(Array(encoded.readableBytesView) == original, "re-encoding changed the frame")
        if case .success(let again) = BinaryCodec.decodePublish(encoded, limits: limits),
            case .publish(let topic2, let payload2, _, let retain2) = again.request
        {
            fuzzCheck(topic2 == topic && payload2 == payload && retain2 == retain && again.id == parsed.id, "decode(encode(x)) != x")
        } else {
            fuzzCheck(false, "a re-encoded publish does not decode")
        }
    }

    if let delivery = try? BinaryCodec.decodeMessage(frame) {
        fuzzCheck(delivery.isBinary, "a binary message came out as text")
    }
    return 0
}
