import NIOCore

extension ByteBuffer {
    /// Writes `string` as a JSON string literal, escaping what RFC 8259 requires.
    @discardableResult
    public mutating func writeJSONString(_ string: String) -> Int {
        var written = writeInteger(UInt8(ascii: "\""))
        var utf8 = string
        utf8.withUTF8 { bytes in
            var runStart = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                written += writeBytes(UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                switch byte {
                case UInt8(ascii: "\""): written += writeStaticString("\\\"")
                case UInt8(ascii: "\\"): written += writeStaticString("\\\\")
                case UInt8(ascii: "\n"): written += writeStaticString("\\n")
                case UInt8(ascii: "\r"): written += writeStaticString("\\r")
                case UInt8(ascii: "\t"): written += writeStaticString("\\t")
                default:
                    let hex: [UInt8] = Array("0123456789abcdef".utf8)
                    written += writeStaticString("\\u00")
                    written += writeInteger(hex[Int(byte >> 4)])
                    written += writeInteger(hex[Int(byte & 0xF)])
                }
                runStart = index + 1
            }
            written += writeBytes(UnsafeBufferPointer(rebasing: bytes[runStart..<bytes.count]))
        }
        written += writeInteger(UInt8(ascii: "\""))
        return written
    }

    /// Writes a decimal integer without going through `String`.
    @discardableResult
    public mutating func writeDecimal(_ value: UInt64) -> Int {
        if value < 10 { return writeInteger(UInt8(ascii: "0") + UInt8(value)) }
        var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
                     UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { scratch in
            var remaining = value
            var index = scratch.count
            while remaining > 0 {
                index -= 1
                scratch[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
            }
            return writeBytes(UnsafeRawBufferPointer(rebasing: scratch[index...]))
        }
    }
}
