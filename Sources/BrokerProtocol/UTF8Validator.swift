/// UTF-8 validation per RFC 3629 (no overlongs, no surrogates, nothing above U+10FFFF).
///
/// `IncrementalUTF8Validator` checks a message that arrives in fragments and reports an invalid
/// sequence as soon as the bytes that prove it arrive, as RFC 6455 §8.1 asks of text messages.
public enum UTF8Validator {
    /// Length of the well-formed sequence starting at `index`, or 0 if it is malformed or cut.
    @inline(__always)
    public static func sequenceLength(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        let lead = bytes[index]
        let remaining = bytes.count - index
        func cont(_ offset: Int) -> UInt8? {
            offset < remaining ? bytes[index + offset] : nil
        }
        switch lead {
        case 0x00...0x7F:
            return 1
        case 0xC2...0xDF:
            guard let b1 = cont(1), b1 & 0xC0 == 0x80 else { return 0 }
            return 2
        case 0xE0...0xEF:
            guard let b1 = cont(1), let b2 = cont(2), b2 & 0xC0 == 0x80 else { return 0 }
            let lower: UInt8 = lead == 0xE0 ? 0xA0 : 0x80
            let upper: UInt8 = lead == 0xED ? 0x9F : 0xBF
            guard b1 >= lower && b1 <= upper else { return 0 }
            return 3
        case 0xF0...0xF4:
            guard let b1 = cont(1), let b2 = cont(2), let b3 = cont(3),
                b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80
            else { return 0 }
            let lower: UInt8 = lead == 0xF0 ? 0x90 : 0x80
            let upper: UInt8 = lead == 0xF4 ? 0x8F : 0xBF
            guard b1 >= lower && b1 <= upper else { return 0 }
            return 4
        default:
            return 0
        }
    }

    /// Whether `bytes` is entirely well-formed UTF-8.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var validator = IncrementalUTF8Validator()
        return validator.feed(bytes) && validator.isComplete
    }
}

/// Validates UTF-8 fed in arbitrary chunks (WebSocket fragments). It is a small DFA state, so a
/// connection carries four bytes of validation state between fragments.
public struct IncrementalUTF8Validator: Sendable {
    /// Bytes still expected to finish the current sequence.
    private var pending: UInt8 = 0
    /// Allowed range for the next continuation byte (narrowed after E0, ED, F0, F4 leads).
    private var lower: UInt8 = 0x80
    private var upper: UInt8 = 0xBF

    public init() {}

    /// Whether the bytes so far end on a character boundary.
    public var isComplete: Bool { pending == 0 }

    public mutating func reset() { self = IncrementalUTF8Validator() }

    /// Feeds more bytes; returns false as soon as they cannot be the prefix of valid UTF-8.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var index = 0
        let count = bytes.count
        while index < count {
            let byte = bytes[index]
            if pending == 0 {
                // Fast path: skip runs of ASCII eight bytes at a time.
                if byte < 0x80 {
                    index += 1
                    while index + 8 <= count {
                        let word = bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)
                        if word & 0x8080_8080_8080_8080 != 0 { break }
                        index += 8
                    }
                    continue
                }
                switch byte {
                case 0xC2...0xDF: pending = 1; lower = 0x80; upper = 0xBF
                case 0xE0: pending = 2; lower = 0xA0; upper = 0xBF
                case 0xE1...0xEC, 0xEE...0xEF: pending = 2; lower = 0x80; upper = 0xBF
                case 0xED: pending = 2; lower = 0x80; upper = 0x9F
                case 0xF0: pending = 3; lower = 0x90; upper = 0xBF
                case 0xF1...0xF3: pending = 3; lower = 0x80; upper = 0xBF
                case 0xF4: pending = 3; lower = 0x80; upper = 0x8F
                default: return false
                }
            } else {
                guard byte >= lower && byte <= upper else { return false }
                pending -= 1
                lower = 0x80
                upper = 0xBF
            }
            index += 1
        }
        return true
    }
}
