import BrokerProtocol
import GRDB

/// The rows of `topics` a filter can match, narrowed in SQL before `Topic.matches` decides.
///
/// A filter without wildcards is one exact lookup. A wildcard filter is narrowed to the names
/// under its literal prefix (the levels before its first wildcard level) with a range on the
/// unique index and to a GLOB pattern made from it (in SQLite, so most names that do not match
/// never reach Swift), then each name is checked with `Topic.matches`; topics are streamed through
/// a cursor, never loaded all at once.
struct TopicSelection {
    let filter: String
    let isWildcard: Bool
    /// An SQL condition on the column `name`, and its arguments.
    let condition: String
    let arguments: StatementArguments

    init(filter: String) {
        self.filter = filter
        isWildcard = Topic.isWildcard(filter)
        if !isWildcard {
            condition = "name = ?"
            arguments = [filter]
        } else if let prefix = Self.literalPrefix(of: filter) {
            // `name >= "p/" AND name < "p0"` is every name starting with "p/" ("0" follows "/").
            condition = "(name = ? OR (name >= ? AND name < ?)) AND name GLOB ?"
            arguments = [prefix, prefix + "/", prefix + "0", Self.globPattern(of: filter)]
        } else {
            condition = "name GLOB ?"
            arguments = [Self.globPattern(of: filter)]
        }
    }

    /// A GLOB pattern that every name the filter matches satisfies (and some others: `*` also
    /// spans levels), so SQLite discards most other names before `Topic.matches` sees them:
    /// `+` becomes `*`, a trailing `/#` or `#` becomes `*`, GLOB's special characters are
    /// bracketed.
    static func globPattern(of filter: String) -> String {
        var pattern = ""
        let levels = Topic.levels(of: filter)
        for (index, level) in levels.enumerated() {
            if level == "#" {
                pattern += "*"
                break
            }
            if index > 0 { pattern += "/" }
            if level == "+" {
                pattern += "*"
                continue
            }
            for character in level {
                switch character {
                case "*": pattern += "[*]"
                case "?": pattern += "[?]"
                case "[": pattern += "[[]"
                default: pattern.append(character)
                }
            }
        }
        return pattern
    }

    /// The levels before the first wildcard level, joined; nil when the first level is one.
    static func literalPrefix(of filter: String) -> String? {
        var literal: [Substring] = []
        for level in Topic.levels(of: filter) {
            if level == "+" || level == "#" { break }
            literal.append(level)
        }
        return literal.isEmpty ? nil : literal.joined(separator: "/")
    }

    /// Calls `body` with the id and name of each matching topic that also satisfies `extra` (an SQL
    /// condition on `topics`, with `extraArguments` bound after the selection's), until it
    /// returns false.
    func forEach(
        _ db: Database,
        where extra: String = "1",
        arguments extraArguments: StatementArguments = [],
        _ body: (Int64, String) throws -> Bool
    ) throws {
        let rows = try Row.fetchCursor(
            db,
            sql: "SELECT id, name FROM topics WHERE \(condition) AND (\(extra))",
            arguments: arguments + extraArguments)
        while let row = try rows.next() {
            let name: String = row[1]
            if isWildcard && !Topic.matches(filter: filter, name: name) { continue }
            if try !body(row[0], name) { return }
        }
    }
}
