/// A strict RFC 8259 JSON validator over raw bytes that reports where each value lies instead of
/// building a tree. The broker forwards a publish's `data` and a request's `id` byte for byte, so
/// it only needs to know that they are valid JSON and where they are.
public struct JSONScanner {
    /// The kind of a scanned value.
    public enum Kind: Sendable, Equatable {
        case object, array, string, number, bool, null
    }

    /// The input is not valid JSON; `offset` is where the scanner gave up.
    public struct SyntaxError: Error, Sendable, Equatable {
        public var offset: Int
        public var reason: String
    }

    /// Maximum nesting of arrays and objects; deeper input is refused rather than recursed into.
    public static let maxDepth = 512

    let bytes: UnsafeRawBufferPointer
    public private(set) var position: Int

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
        self.position = 0
    }

    var atEnd: Bool { position >= bytes.count }

    @inline(__always)
    func peek() -> UInt8? { position < bytes.count ? bytes[position] : nil }

    func fail(_ reason: String) -> SyntaxError { SyntaxError(offset: position, reason: reason) }

    public mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0A, 0x0D: position += 1
            default: return
            }
        }
    }

    /// Expects `byte` (after whitespace) and consumes it.
    public mutating func expect(_ byte: UInt8) throws(SyntaxError) {
        skipWhitespace()
        guard peek() == byte else { throw fail("expected '\(Character(Unicode.Scalar(byte)))'") }
        position += 1
    }

    /// Expects nothing but whitespace to follow.
    public mutating func expectEnd() throws(SyntaxError) {
        skipWhitespace()
        guard atEnd else { throw fail("trailing characters") }
    }

    /// Consumes `byte` if it comes next (after whitespace).
    public mutating func consume(_ byte: UInt8) -> Bool {
        skipWhitespace()
        if peek() == byte { position += 1; return true }
        return false
    }

    /// Scans one value (after whitespace) and returns its kind and byte range.
    public mutating func scanValue(depth: Int = 0) throws(SyntaxError) -> (kind: Kind, range: Range<Int>) {
        skipWhitespace()
        let start = position
        guard let byte = peek() else { throw fail("unexpected end of input") }
        let kind: Kind
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < Self.maxDepth else { throw fail("nested too deeply") }
            position += 1
            if !consume(UInt8(ascii: "}")) {
                repeat {
                    skipWhitespace()
                    guard peek() == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    try scanString()
                    try expect(UInt8(ascii: ":"))
                    _ = try scanValue(depth: depth + 1)
                } while consume(UInt8(ascii: ","))
                try expect(UInt8(ascii: "}"))
            }
            kind = .object
        case UInt8(ascii: "["):
            guard depth < Self.maxDepth else { throw fail("nested too deeply") }
            position += 1
            if !consume(UInt8(ascii: "]")) {
                repeat { _ = try scanValue(depth: depth + 1) } while consume(UInt8(ascii: ","))
                try expect(UInt8(ascii: "]"))
            }
            kind = .array
        case UInt8(ascii: "\""):
            try scanString()
            kind = .string
        case UInt8(ascii: "t"):
            try scanLiteral("true"); kind = .bool
        case UInt8(ascii: "f"):
            try scanLiteral("false"); kind = .bool
        case UInt8(ascii: "n"):
            try scanLiteral("null"); kind = .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            try scanNumber(); kind = .number
        default:
            throw fail("unexpected character")
        }
        return (kind, start..<position)
    }

    mutating func scanLiteral(_ literal: StaticString) throws(SyntaxError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw fail("unexpected end of input") }
        let pointer = literal.utf8Start
        for offset in 0..<count where bytes[position + offset] != pointer[offset] {
            throw fail("invalid literal")
        }
        position += count
    }

    mutating func scanNumber() throws(SyntaxError) {
        if peek() == UInt8(ascii: "-") { position += 1 }
        guard let first = peek(), isDigit(first) else { throw fail("invalid number") }
        position += 1
        if first != UInt8(ascii: "0") { skipDigits() }
        if peek() == UInt8(ascii: ".") {
            position += 1
            guard let digit = peek(), isDigit(digit) else { throw fail("invalid number") }
            skipDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            position += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { position += 1 }
            guard let digit = peek(), isDigit(digit) else { throw fail("invalid number") }
            skipDigits()
        }
    }

    @inline(__always)
    func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    mutating func skipDigits() {
        while let byte = peek(), isDigit(byte) { position += 1 }
    }

    /// Scans a string starting at its opening quote: escapes must be valid, control characters
    /// are refused and the bytes must be well-formed UTF-8 (binary-frame and HTTP input has not
    /// been checked by the WebSocket layer).
    mutating func scanString() throws(SyntaxError) {
        position += 1  // opening quote
        while position < bytes.count {
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return
            case UInt8(ascii: "\\"):
                position += 1
                guard let escaped = peek() else { throw fail("unterminated string") }
                switch escaped {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                    UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position += 1
                case UInt8(ascii: "u"):
                    guard bytes.count - position >= 5 else { throw fail("invalid \\u escape") }
                    for offset in 1...4 where hexValue(bytes[position + offset]) == nil {
                        throw fail("invalid \\u escape")
                    }
                    position += 5
                default:
                    throw fail("invalid escape")
                }
            case 0..<0x20:
                throw fail("control character in string")
            case 0x20..<0x80:
                position += 1
            default:
                let length = UTF8Validator.sequenceLength(bytes, at: position)
                guard length > 0 else { throw fail("invalid UTF-8 in string") }
                position += length
            }
        }
        throw fail("unterminated string")
    }
}

@inline(__always)
func hexValue(_ byte: UInt8) -> UInt8? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
    default: return nil
    }
}

extension JSONScanner {
    /// Decodes the JSON string literal occupying `range` (quotes included) into a Swift string.
    /// The literal must already have passed `scanString`.
    public static func decodeString(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        let inner = bytes[(range.lowerBound + 1)..<(range.upperBound - 1)]
        if !inner.contains(UInt8(ascii: "\\")) {
            return String(decoding: inner, as: UTF8.self)
        }
        var scalars = String.UnicodeScalarView()
        var utf8: [UInt8] = []
        var index = inner.startIndex
        func flushUTF8() {
            if !utf8.isEmpty {
                scalars.append(contentsOf: String(decoding: utf8, as: UTF8.self).unicodeScalars)
                utf8.removeAll(keepingCapacity: true)
            }
        }
        func readHex4(_ at: Int) -> UInt32 {
            var value: UInt32 = 0
            for offset in 0..<4 { value = value << 4 | UInt32(hexValue(bytes[at + offset]) ?? 0) }
            return value
        }
        while index < inner.endIndex {
            let byte = bytes[index]
            guard byte == UInt8(ascii: "\\") else {
                utf8.append(byte)
                index += 1
                continue
            }
            flushUTF8()
            let escaped = bytes[index + 1]
            index += 2
            switch escaped {
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = readHex4(index)
                index += 4
                if (0xD800..<0xDC00).contains(code), index + 6 <= inner.endIndex,
                    bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
                {
                    let low = readHex4(index + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                }
                // A lone surrogate cannot be represented in a Swift string: use U+FFFD.
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: scalars.append(Unicode.Scalar(escaped))
            }
        }
        flushUTF8()
        return String(scalars)
    }
}
