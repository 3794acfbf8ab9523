/// The `Sec-WebSocket-Extensions` header grammar of RFC 6455 §9.1:
///
///     extension-list = 1#extension
///     extension      = token *( ";" param )
///     param          = token [ "=" ( token / quoted-string ) ]
///
/// Several header lines are one list (RFC 9110 §5.3), so every line's elements are parsed in
/// order. An element that breaks the grammar is kept as `nil` rather than dropped, so that a
/// negotiator can skip exactly that offer and still consider the ones after it.
public enum ExtensionHeader {
    public struct Element: Equatable, Sendable {
        public var name: String
        /// Parameters in the order sent; `value` is nil for a parameter without `=`, and quoted
        /// values are unescaped.
        public var parameters: [(name: String, value: String?)]

        public init(name: String, parameters: [(name: String, value: String?)] = []) {
            self.name = name
            self.parameters = parameters
        }

        public static func == (lhs: Element, rhs: Element) -> Bool {
            lhs.name == rhs.name && lhs.parameters.elementsEqual(rhs.parameters) { $0.name == $1.name && $0.value == $1.value }
        }
    }

    /// Every element of every header line, in order; `nil` for a malformed element. Empty list
    /// elements (`a, , b`) are skipped, as RFC 9110 §5.6.1 asks of recipients.
    public static func parse(_ lines: [String]) -> [Element?] {
        var elements: [Element?] = []
        for line in lines {
            for raw in splitOutsideQuotes(Array(line.utf8), separator: UInt8(ascii: ",")) {
                let trimmed = trim(raw)
                if trimmed.isEmpty { continue }
                elements.append(parseElement(trimmed))
            }
        }
        return elements
    }

    private static func parseElement(_ bytes: ArraySlice<UInt8>) -> Element? {
        let pieces = splitOutsideQuotes(Array(bytes), separator: UInt8(ascii: ";")).map(trim)
        guard let first = pieces.first, isToken(first) else { return nil }
        var element = Element(name: String(decoding: first, as: UTF8.self).lowercased())
        for piece in pieces.dropFirst() {
            guard let parameter = parseParameter(piece) else { return nil }
            element.parameters.append(parameter)
        }
        return element
    }

    private static func parseParameter(_ bytes: ArraySlice<UInt8>) -> (name: String, value: String?)? {
        guard let equals = bytes.firstIndex(of: UInt8(ascii: "=")) else {
            guard isToken(bytes) else { return nil }
            return (String(decoding: bytes, as: UTF8.self).lowercased(), nil)
        }
        let name = trim(bytes[bytes.startIndex..<equals])
        let rawValue = trim(bytes[(equals + 1)...])
        guard isToken(name) else { return nil }
        let value: ArraySlice<UInt8>
        if rawValue.first == UInt8(ascii: "\"") {
            guard let unquoted = unquote(rawValue) else { return nil }
            value = unquoted
        } else {
            value = rawValue
        }
        // RFC 6455 §9.1: a value, quoted or not, must be a token once unescaped.
        guard isToken(value) else { return nil }
        return (String(decoding: name, as: UTF8.self).lowercased(), String(decoding: value, as: UTF8.self))
    }

    /// The content of a quoted-string (RFC 9110 §5.6.4), backslash escapes removed; nil if the
    /// quotes do not close exactly at the end.
    private static func unquote(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8>? {
        var result: [UInt8] = []
        var index = bytes.startIndex + 1
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\\") {
                index += 1
                guard index < bytes.endIndex else { return nil }
                result.append(bytes[index])
            } else if byte == UInt8(ascii: "\"") {
                return index == bytes.endIndex - 1 ? result[...] : nil
            } else {
                result.append(byte)
            }
            index += 1
        }
        return nil
    }

    /// Splits on `separator` except inside quoted strings (where a backslash escapes a byte).
    private static func splitOutsideQuotes(_ bytes: [UInt8], separator: UInt8) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = []
        var start = 0
        var inQuotes = false
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if inQuotes {
                if byte == UInt8(ascii: "\\") {
                    index += 1
                } else if byte == UInt8(ascii: "\"") {
                    inQuotes = false
                }
            } else if byte == UInt8(ascii: "\"") {
                inQuotes = true
            } else if byte == separator {
                parts.append(bytes[start..<index])
                start = index + 1
            }
            index += 1
        }
        parts.append(bytes[start...])
        return parts
    }

    private static func trim(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var slice = bytes
        while let first = slice.first, first == 0x20 || first == 0x09 { slice = slice.dropFirst() }
        while let last = slice.last, last == 0x20 || last == 0x09 { slice = slice.dropLast() }
        return slice
    }

    /// RFC 9110 §5.6.2 token: one or more visible ASCII characters other than delimiters.
    static func isToken(_ bytes: ArraySlice<UInt8>) -> Bool {
        guard !bytes.isEmpty else { return false }
        return bytes.allSatisfy { byte in
            guard byte > 0x20, byte < 0x7F else { return false }
            return !"\"(),/:;<=>?@[\\]{}".utf8.contains(byte)
        }
    }
}
