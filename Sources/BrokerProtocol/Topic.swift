/// Topic names and filters as PROTOCOL.md defines them: UTF-8, levels separated by `/`,
/// `+` matching exactly one level and `#` matching zero or more trailing levels.
///
/// Validation works on the UTF-8 bytes so that the publish path never builds an intermediate
/// array of levels just to check a name.
public enum Topic {
    /// Default maximum length of a name or filter in bytes.
    public static let defaultMaxBytes = 256
    /// Default maximum number of levels of a name or filter (`a/b/c` has three).
    public static let defaultMaxLevels = 32

    /// Why a topic name or filter was refused; `description` is meant for people.
    public enum ValidationError: Error, Equatable, CustomStringConvertible, Sendable {
        case empty
        case tooLong(limit: Int)
        case containsNul
        /// A control character other than NUL: U+0001–U+001F or U+007F (they would reach logs
        /// and terminals as they are).
        case containsControlCharacter
        case tooManyLevels(limit: Int)
        case wildcardInName
        case misplacedWildcard

        public var description: String {
            switch self {
            case .empty: return "topic is empty"
            case .tooLong(let limit): return "topic is longer than \(limit) bytes"
            case .containsNul: return "topic contains NUL"
            case .containsControlCharacter: return "topic contains a control character (U+0000–U+001F, U+007F)"
            case .tooManyLevels(let limit): return "topic has more than \(limit) levels"
            case .wildcardInName: return "topic name contains a wildcard (+ or #)"
            case .misplacedWildcard: return "wildcard must be a whole level; # only as the last level"
            }
        }
    }

    /// Checks a concrete topic name (the target of a publish): not empty, at most `maxBytes`
    /// UTF-8 bytes and `maxLevels` levels, no wildcard and no control character.
    public static func validateName(
        _ name: String, maxBytes: Int = defaultMaxBytes, maxLevels: Int = defaultMaxLevels
    ) throws(ValidationError) {
        var utf8 = name.utf8
        let count = utf8.count
        if count == 0 { throw .empty }
        if count > maxBytes { throw .tooLong(limit: maxBytes) }
        let result: ValidationError?? = utf8.withContiguousStorageIfAvailable { bytes -> ValidationError? in
            var levels = 1
            for byte in bytes {
                if let error = check(nameByte: byte, levels: &levels, maxLevels: maxLevels) { return error }
            }
            return nil
        }
        if let outcome = result {
            if let error = outcome { throw error }
            return
        }
        // Non-contiguous (bridged) strings: take the slow path once.
        utf8 = String(name).utf8
        var levels = 1
        for byte in utf8 {
            if let error = check(nameByte: byte, levels: &levels, maxLevels: maxLevels) { throw error }
        }
    }

    /// One byte of a name: what is wrong with it, if anything. Every byte of a multi-byte UTF-8
    /// scalar is 0x80 or more, so only ASCII can match here.
    @inline(__always)
    private static func check(nameByte byte: UInt8, levels: inout Int, maxLevels: Int) -> ValidationError? {
        switch byte {
        case 0: return .containsNul
        case 0x01...0x1F, 0x7F: return .containsControlCharacter
        case UInt8(ascii: "+"), UInt8(ascii: "#"): return .wildcardInName
        case UInt8(ascii: "/"):
            levels += 1
            return levels > maxLevels ? .tooManyLevels(limit: maxLevels) : nil
        default: return nil
        }
    }

    /// Checks a subscription filter: `+` and `#` only as whole levels, `#` only last; at most
    /// `maxBytes` UTF-8 bytes and `maxLevels` levels (wildcards count as levels), no control
    /// character.
    public static func validateFilter(
        _ filter: String, maxBytes: Int = defaultMaxBytes, maxLevels: Int = defaultMaxLevels
    ) throws(ValidationError) {
        let utf8 = filter.utf8
        let count = utf8.count
        if count == 0 { throw .empty }
        if count > maxBytes { throw .tooLong(limit: maxBytes) }
        let slash = UInt8(ascii: "/"), plus = UInt8(ascii: "+"), hash = UInt8(ascii: "#")
        var previous: UInt8 = slash  // the start of the filter behaves like the start of a level
        var levels = 1
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            let next = utf8.index(after: index)
            let following: UInt8? = next == utf8.endIndex ? nil : utf8[next]
            switch byte {
            case 0:
                throw .containsNul
            case 0x01...0x1F, 0x7F:
                throw .containsControlCharacter
            case slash:
                levels += 1
                if levels > maxLevels { throw .tooManyLevels(limit: maxLevels) }
            case plus:
                if previous != slash || (following != nil && following != slash) { throw .misplacedWildcard }
            case hash:
                if previous != slash || following != nil { throw .misplacedWildcard }
            default:
                break
            }
            previous = byte
            index = next
        }
    }

    /// The levels of a name or filter, empty levels kept ("a//b" has three). Cut on the UTF-8
    /// bytes: `/` is ASCII, so every cut falls between scalars, and this skips the grapheme
    /// breaking that `String.split` does per character (it was the costliest step of a publish).
    public static func levels(of topic: String) -> [Substring] {
        var levels: [Substring] = []
        levels.reserveCapacity(8)
        let utf8 = topic.utf8
        var start = utf8.startIndex
        var index = start
        while index != utf8.endIndex {
            if utf8[index] == UInt8(ascii: "/") {
                levels.append(Substring(utf8[start..<index]))
                start = utf8.index(after: index)
            }
            utf8.formIndex(after: &index)
        }
        levels.append(Substring(utf8[start..<index]))
        return levels
    }

    /// Whether `filter` matches the concrete `name`, with MQTT's rule that a filter starting with
    /// a wildcard does not match names starting with `$`. Both are assumed valid.
    public static func matches(filter: String, name: String) -> Bool {
        if name.utf8.first == UInt8(ascii: "$") {
            let first = filter.utf8.first
            if first == UInt8(ascii: "+") || first == UInt8(ascii: "#") { return false }
        }
        var filterLevels = filter.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)[...]
        var nameLevels = name.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)[...]
        while let level = filterLevels.popFirst() {
            if level.elementsEqual("#".utf8) { return true }
            guard let nameLevel = nameLevels.popFirst() else { return false }
            if level.elementsEqual("+".utf8) { continue }
            if !level.elementsEqual(nameLevel) { return false }
        }
        return nameLevels.isEmpty
    }

    /// Whether a filter contains a wildcard level.
    public static func isWildcard(_ filter: String) -> Bool {
        filter.utf8.contains(UInt8(ascii: "+")) || filter.utf8.contains(UInt8(ascii: "#"))
    }
}
