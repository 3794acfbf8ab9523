import Foundation
import TOMLKit

/// Reads a TOML configuration file (TOMLKit, i.e. toml++: all of TOML 1.0) into assignments of
/// dotted keys: `[section]` tables, dotted keys and inline tables become `section.key`, arrays
/// (on one line or several) become list elements, other values their text.
///
/// A file that is not TOML throws, naming the line and column TOMLKit reports. Unknown keys and
/// values of the wrong shape are problems with the line of their key: TOMLKit keeps no source
/// positions for values, so `TOMLKeyLines` finds them in the text that TOMLKit has accepted.
struct TOMLSettingsReader {
    let path: String

    func read(_ text: String) throws(SettingError) -> ([SettingAssignment], [SettingError]) {
        let lines = TOMLKeyLines(text)
        // toml++ asserts (and aborts the process) on a table header with no key after its
        // bracket (`[` then a line end, a dot or a comment), found by Fuzz/ FuzzSettings: refuse
        // those before it sees them.
        if let line = lines.namelessHeaderLine {
            throw SettingError(
                key: "config", source: "\(path):\(line)",
                message: "not valid TOML: a table header needs a key after '['")
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            let begin = error.source.begin
            throw SettingError(
                key: "config", source: "\(path):\(begin.line)",
                message: "not valid TOML: \(error.description) (column \(begin.column))")
        } catch {
            throw SettingError(key: "config", source: path, message: "not valid TOML: \(error)")
        }
        var assignments: [SettingAssignment] = []
        var problems: [SettingError] = []
        walk(root, prefix: "", lines: lines, into: &assignments, problems: &problems)
        return (assignments, problems)
    }

    private func location(of name: String, _ lines: TOMLKeyLines) -> String {
        lines.line(of: name).map { "\(path):\($0)" } ?? path
    }

    private func walk(
        _ table: TOMLTable, prefix: String, lines: TOMLKeyLines,
        into assignments: inout [SettingAssignment], problems: inout [SettingError]
    ) {
        for (key, value) in table {
            let name = prefix + key
            let source = location(of: name, lines)
            guard SettingKey.named(name) != nil else {
                if let section = value.table {
                    if !SettingKey.all.contains(where: { $0.name.hasPrefix(name + ".") }) {
                        problems.append(SettingError(key: name, source: source, message: "unknown table"))
                    }
                    walk(section, prefix: name + ".", lines: lines, into: &assignments, problems: &problems)
                } else {
                    problems.append(SettingError(key: name, source: source, message: YAMLSettingsReader.unknownKeyMessage(name)))
                }
                continue
            }
            if let array = value.array {
                var elements: [String] = []
                for element in array {
                    guard let text = Self.text(of: element) else {
                        problems.append(SettingError(key: name, source: source, message: "list elements must be plain values"))
                        continue
                    }
                    elements.append(text)
                }
                assignments.append(SettingAssignment(key: name, raw: .elements(elements), source: source))
            } else if let text = Self.text(of: value) {
                assignments.append(SettingAssignment(key: name, raw: .text(text), source: source))
            } else {
                problems.append(SettingError(key: name, source: source, message: "expected a value, got a \(value.type)"))
            }
        }
    }

    /// A string, number or boolean as text; nil for tables, arrays, dates and times.
    static func text(of value: any TOMLValueConvertible) -> String? {
        switch value.type {
        case .string: return value.string
        case .int: return value.int.map { String($0) }
        case .double: return value.double.map { String($0) }
        case .bool: return value.bool.map { String($0) }
        default: return nil
        }
    }
}

/// Where each key and table header of a TOML document is written (1-based lines, by dotted
/// name), for messages, and spots the table headers TOMLKit must not see. It needs to follow the
/// syntax only as far as telling keys from what is inside strings and arrays; a key it cannot
/// place (one inside an inline table) gets the line of the nearest enclosing key it can.
struct TOMLKeyLines {
    private var lines: [String: Int] = [:]
    /// The first table header with no key after its bracket, which TOMLKit must not be given.
    private(set) var namelessHeaderLine: Int?

    init(_ text: String) {
        var prefix = ""
        var openMultilineString: String?
        var arrayDepth = 0
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = Substring(rawLine)
            if let delimiter = openMultilineString {
                guard let end = line.range(of: delimiter) else { continue }
                openMultilineString = nil
                line = line[end.upperBound...]
                // The rest of the line belongs to the value that the string was part of.
                (arrayDepth, openMultilineString) = Self.scanValue(line, depth: arrayDepth)
                continue
            }
            if arrayDepth > 0 {
                (arrayDepth, openMultilineString) = Self.scanValue(line, depth: arrayDepth)
                continue
            }
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                let isArrayOfTables = trimmed.hasPrefix("[[")
                let inside = trimmed.dropFirst(isArrayOfTables ? 2 : 1)
                if namelessHeaderLine == nil, !Self.startsWithKey(inside) { namelessHeaderLine = number }
                let name = Self.dottedName(inside.prefix { $0 != "]" })
                record(name, number)
                prefix = name.isEmpty ? "" : name + "."
                continue
            }
            guard let equals = Self.firstUnquoted("=", in: trimmed) else { continue }
            record(prefix + Self.dottedName(trimmed[..<equals]), number)
            (arrayDepth, openMultilineString) = Self.scanValue(trimmed[trimmed.index(after: equals)...], depth: 0)
        }
    }

    /// Whether `text`, after blanks, starts a key: a bare key character or a quote.
    static func startsWithKey(_ text: Substring) -> Bool {
        guard let first = text.first(where: { $0 != " " && $0 != "\t" }) else { return false }
        return first == "\"" || first == "'" || first == "_" || first == "-"
            || (first.isASCII && (first.isLetter || first.isNumber))
    }

    private mutating func record(_ name: String, _ line: Int) {
        if lines[name] == nil { lines[name] = line }
    }

    /// The line of `name`, or of the nearest enclosing table or key that has one.
    func line(of name: String) -> Int? {
        var candidate = name
        while true {
            if let line = lines[candidate] { return line }
            guard let dot = candidate.lastIndex(of: ".") else { return nil }
            candidate = String(candidate[..<dot])
        }
    }

    /// `a . "b.c" . 'd'` → `a.b.c.d` (TOMLKit's table keys, unquoted, joined with dots).
    static func dottedName(_ text: Substring) -> String {
        var parts: [String] = []
        var current = ""
        var quote: Character?
        for character in text {
            if let open = quote {
                if character == open { quote = nil } else { current.append(character) }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == "." {
                parts.append(current)
                current = ""
            } else if character != " " && character != "\t" {
                current.append(character)
            }
        }
        parts.append(current)
        return parts.joined(separator: ".")
    }

    static func firstUnquoted(_ target: Character, in text: Substring) -> Substring.Index? {
        var quote: Character?
        for index in text.indices {
            let character = text[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                quote = character
            } else if character == target {
                return index
            }
        }
        return nil
    }

    /// Follows a value (or the rest of one) to the end of its line: how deep in arrays and
    /// inline tables it ends, and whether a multi-line string is left open.
    static func scanValue(_ text: Substring, depth: Int) -> (depth: Int, openMultilineString: String?) {
        var depth = depth
        var index = text.startIndex
        while index < text.endIndex {
            let rest = text[index...]
            if rest.hasPrefix("\"\"\"") || rest.hasPrefix("'''") {
                let delimiter = String(rest.prefix(3))
                let body = rest.dropFirst(3)
                guard let end = body.range(of: delimiter) else { return (depth, delimiter) }
                index = end.upperBound
                continue
            }
            let character = text[index]
            switch character {
            case "#":
                return (depth, nil)
            case "\"", "'":
                // A one-line string: skip to its closing quote (basic strings have escapes).
                var cursor = text.index(after: index)
                while cursor < text.endIndex, text[cursor] != character {
                    if character == "\"", text[cursor] == "\\" { cursor = text.index(after: cursor) }
                    if cursor < text.endIndex { cursor = text.index(after: cursor) }
                }
                index = cursor < text.endIndex ? text.index(after: cursor) : cursor
                continue
            case "[", "{":
                depth += 1
            case "]", "}":
                depth = max(0, depth - 1)
            default:
                break
            }
            index = text.index(after: index)
        }
        return (depth, nil)
    }
}
