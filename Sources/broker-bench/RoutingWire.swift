import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What a delivered `routing` payload says.
enum RoutingStamp: Equatable {
    case warmUp
    /// Published at `sentAt` (`nowNanos()`), the `sequence`-th measured publish of the run.
    case measured(sentAt: UInt64, sequence: Int)
    case unknown
}

/// The payload of every `routing` publish, `size` bytes, the same for both brokers.
///
/// Text (our text frames, where it is the content of the `data` string, and NATS): 19 decimal
/// digits of the send time, 10 of the sequence number, then `x` up to `size`; a warm-up message
/// is `w` then `x`s. Binary (our binary frames): the send time as a big-endian UInt64, the
/// sequence number as a UInt32, then `x`s; a warm-up message has send time 0.
enum RoutingPayload {
    static let textHeader = 29
    static let binaryHeader = 12

    static func writeText(_ stamp: (sentAt: UInt64, sequence: Int)?, size: Int, into buffer: inout ByteBuffer) {
        guard let stamp else {
            buffer.writeInteger(UInt8(ascii: "w"))
            buffer.writeRepeatingByte(UInt8(ascii: "x"), count: size - 1)
            return
        }
        writeDigits(stamp.sentAt, count: 19, into: &buffer)
        writeDigits(UInt64(stamp.sequence), count: 10, into: &buffer)
        buffer.writeRepeatingByte(UInt8(ascii: "x"), count: size - textHeader)
    }

    static func writeBinary(_ stamp: (sentAt: UInt64, sequence: Int)?, size: Int, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(stamp?.sentAt ?? 0, UInt32(truncatingIfNeeded: stamp?.sequence ?? 0))
        buffer.writeRepeatingByte(UInt8(ascii: "x"), count: size - binaryHeader)
    }

    /// Zero-padded: the payload size stays fixed.
    private static func writeDigits(_ value: UInt64, count: Int, into buffer: inout ByteBuffer) {
        var divisor: UInt64 = 1
        for _ in 1..<count { divisor *= 10 }
        var rest = value
        for _ in 0..<count {
            buffer.writeInteger(UInt8(48 + (rest / divisor) % 10))
            rest %= divisor
            divisor /= 10
        }
    }

    static func readText(_ bytes: UnsafeRawBufferPointer) -> RoutingStamp {
        if bytes.first == UInt8(ascii: "w") { return .warmUp }
        guard bytes.count >= textHeader else { return .unknown }
        var sentAt: UInt64 = 0
        var sequence = 0
        for i in 0..<textHeader {
            let digit = bytes[i] &- 48
            guard digit < 10 else { return .unknown }
            if i < 19 { sentAt = sentAt * 10 + UInt64(digit) } else { sequence = sequence * 10 + Int(digit) }
        }
        return .measured(sentAt: sentAt, sequence: sequence)
    }

    static func readBinary(_ bytes: UnsafeRawBufferPointer) -> RoutingStamp {
        guard bytes.count >= binaryHeader else { return .unknown }
        var sentAt: UInt64 = 0
        var sequence = 0
        for i in 0..<8 { sentAt = sentAt << 8 | UInt64(bytes[i]) }
        for i in 8..<12 { sequence = sequence << 8 | Int(bytes[i]) }
        return sentAt == 0 ? .warmUp : .measured(sentAt: sentAt, sequence: sequence)
    }
}

/// Our broker's frames as a `routing` subscriber reads them, in place: a `message` (text, as
/// `ServerMessageEncoder.message` writes it, or binary) gives its topic's index and its stamp.
enum OursDelivery {
    static let textPrefix = Array(#"{"op":"message","topic":""#.utf8)
    static let dataKey = Array(#","data":""#.utf8)
    static let subscribedPrefix = Array(#"{"op":"subscribed""#.utf8)
    static let errorPrefix = Array(#"{"op":"error""#.utf8)

    /// nil when the frame is not a `message`; a topic of nil when its name is not one of `plan`'s.
    static func text(_ frame: ByteBuffer, plan: RoutingPlan) -> (topic: Int?, stamp: RoutingStamp)? {
        frame.withUnsafeReadableBytes { bytes in
            guard starts(bytes, with: textPrefix) else { return nil }
            var i = textPrefix.count
            let topicStart = i
            while i < bytes.count, bytes[i] != 34 { i += 1 }  // bench topics need no escapes
            let topic = plan.topicIndex(UnsafeRawBufferPointer(rebasing: bytes[topicStart..<min(i, bytes.count)]))
            i += 1
            guard i + dataKey.count <= bytes.count,
                starts(UnsafeRawBufferPointer(rebasing: bytes[i...]), with: dataKey)
            else { return (topic, .unknown) }
            return (topic, RoutingPayload.readText(UnsafeRawBufferPointer(rebasing: bytes[(i + dataKey.count)...])))
        }
    }

    /// nil when the frame is not a binary `message` (kind 0x02).
    static func binary(_ frame: ByteBuffer, plan: RoutingPlan) -> (topic: Int?, stamp: RoutingStamp)? {
        frame.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4, bytes[0] == 0x02 else { return nil }
            let length = Int(bytes[2]) << 8 | Int(bytes[3])
            var payloadAt = 4 + length
            if bytes[1] & 0x01 != 0 { payloadAt += 8 }  // offset present
            guard payloadAt <= bytes.count else { return (nil, .unknown) }
            let topic = plan.topicIndex(UnsafeRawBufferPointer(rebasing: bytes[4..<(4 + length)]))
            return (topic, RoutingPayload.readBinary(UnsafeRawBufferPointer(rebasing: bytes[payloadAt...])))
        }
    }

    static func hasPrefix(_ frame: ByteBuffer, _ prefix: [UInt8]) -> Bool {
        frame.withUnsafeReadableBytes { starts($0, with: prefix) }
    }

    private static func starts(_ bytes: UnsafeRawBufferPointer, with prefix: [UInt8]) -> Bool {
        bytes.count >= prefix.count
            && prefix.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, prefix.count) == 0 }
    }
}
