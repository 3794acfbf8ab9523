import Foundation
import Yams

/// One setting as a source states it, before it is parsed: the key, its text (or, for a
/// sequence in a file, its elements) and where it was written.
public struct SettingAssignment: Sendable, Equatable {
    public enum Raw: Sendable, Equatable {
        case text(String)
        case elements([String])
    }

    public var key: String
    public var raw: Raw
    /// `FILE:LINE`, `environment variable BROKER_…` or `flag --…`.
    public var source: String

    public init(key: String, raw: Raw, source: String) {
        self.key = key
        self.raw = raw
        self.source = source
    }
}

/// Reading settings from their sources, and resolving them with one precedence:
/// flags > environment (BROKER_*) > configuration file > defaults.
public enum SettingsLoader {
    /// The environment variable naming a configuration file when `--config` is not given.
    public static let configFileVariable = "BROKER_CONFIG"

    // MARK: Resolution

    /// Resolves every source, in precedence order. Throws the first problem, naming the key and
    /// where it was set.
    public static func resolve(
        configFile: String?, environment: [String: String], flags: [SettingAssignment]
    ) throws -> BrokerSettings {
        var assignments: [SettingAssignment] = []
        if let path = configFile ?? environment[configFileVariable].flatMap({ $0.isEmpty ? nil : $0 }) {
            let (fileAssignments, problems) = try readFile(path)
            if let first = problems.first { throw first }
            assignments += fileAssignments
        }
        assignments += fromEnvironment(environment)
        assignments += flags
        var settings = BrokerSettings()
        try apply(assignments, to: &settings)
        try settings.validate()
        return settings
    }

    /// Applies assignments in order (a later one for the same key wins).
    public static func apply(_ assignments: [SettingAssignment], to settings: inout BrokerSettings) throws(SettingError) {
        for assignment in assignments {
            guard let key = SettingKey.named(assignment.key) else {
                throw SettingError(key: assignment.key, source: assignment.source, message: "unknown key")
            }
            do {
                try key.apply(&settings, try value(of: assignment, for: key))
            } catch {
                throw SettingError(key: key.name, source: assignment.source, message: error.message)
            }
        }
    }

    static func value(of assignment: SettingAssignment, for key: SettingKey) throws(SettingProblem) -> SettingValue {
        switch (assignment.raw, key.kind) {
        case (.text(let text), _):
            return try key.parse(text)
        case (.elements(let elements), .list):
            return .list(elements)
        case (.elements, _):
            throw SettingProblem("expected a single value, got a list")
        }
    }

    /// Every problem in a configuration file: syntax, unknown keys, bad values, bad
    /// combinations. Empty when the file is good.
    public static func check(_ path: String) -> [SettingError] {
        let assignments: [SettingAssignment]
        var problems: [SettingError]
        do {
            (assignments, problems) = try readFile(path)
        } catch let error as SettingError {
            return [error]
        } catch {
            return [SettingError(key: "-", source: path, message: "\(error)")]
        }
        var settings = BrokerSettings()
        for assignment in assignments {
            do { try apply([assignment], to: &settings) } catch { problems.append(error) }
        }
        if problems.isEmpty {
            do { try settings.validate() } catch {
                var located = error
                located.source = path
                problems.append(located)
            }
        }
        return problems.sorted { line(of: $0) < line(of: $1) }
    }

    private static func line(of error: SettingError) -> Int {
        error.source.flatMap { $0.split(separator: ":").last.flatMap { Int($0) } } ?? 0
    }

    // MARK: Environment

    /// `BROKER_*` variables of known settings (other variables are left alone).
    public static func fromEnvironment(_ environment: [String: String]) -> [SettingAssignment] {
        SettingKey.all.compactMap { key in
            environment[key.environmentVariable].map {
                SettingAssignment(key: key.name, raw: .text($0), source: "environment variable \(key.environmentVariable)")
            }
        }
    }

    // MARK: Flags

    /// Parses `--name value` and `--name=value` flags of settings. A list setting's flag may be
    /// repeated; a boolean's value may be left out (`--metrics-enabled` means true).
    public static func fromFlags(_ arguments: [String]) throws(SettingError) -> [SettingAssignment] {
        var assignments: [SettingAssignment] = []
        var listValues: [String: [String]] = [:]
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            guard argument.hasPrefix("--") else {
                throw SettingError(key: argument, source: "command line", message: "unexpected argument")
            }
            var flag = argument
            var text: String?
            if let equals = argument.firstIndex(of: "=") {
                flag = String(argument[..<equals])
                text = String(argument[argument.index(after: equals)...])
            }
            guard let key = SettingKey.flagged(flag) else {
                throw SettingError(key: flag, source: "command line", message: "unknown option")
            }
            if text == nil {
                if case .bool = key.kind, index == arguments.count || arguments[index].hasPrefix("--") {
                    text = "true"
                } else if index < arguments.count {
                    text = arguments[index]
                    index += 1
                } else {
                    throw SettingError(key: key.name, source: "flag \(flag)", message: "missing value")
                }
            }
            if case .list = key.kind {
                listValues[key.name, default: []].append(text!)
                assignments.removeAll { $0.key == key.name }
                assignments.append(SettingAssignment(key: key.name, raw: .elements(listValues[key.name]!), source: "flag \(flag)"))
            } else {
                assignments.append(SettingAssignment(key: key.name, raw: .text(text!), source: "flag \(flag)"))
            }
        }
        return assignments
    }

    // MARK: Files

    /// Reads a YAML (`.yaml`, `.yml`) or TOML (`.toml`) file into assignments, with every
    /// unknown key or misplaced value as a problem. Throws when the file cannot be read or
    /// parsed at all.
    public static func readFile(_ path: String) throws -> ([SettingAssignment], [SettingError]) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SettingError(key: "config", source: path, message: "cannot read the file")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SettingError(key: "config", source: path, message: "the file is not UTF-8")
        }
        if path.lowercased().hasSuffix(".toml") {
            return try TOMLSettingsReader(path: path).read(text)
        }
        return try YAMLSettingsReader(path: path).read(text)
    }
}

/// Flattens a YAML document into dotted keys with their lines (Yams keeps each node's mark).
struct YAMLSettingsReader {
    let path: String

    func read(_ text: String) throws -> ([SettingAssignment], [SettingError]) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw SettingError(key: "config", source: path, message: "not valid YAML: \(Self.describe(error))")
        }
        var assignments: [SettingAssignment] = []
        var problems: [SettingError] = []
        guard let root else { return ([], []) }  // an empty file sets nothing
        guard case .mapping(let mapping) = root else {
            throw SettingError(key: "config", source: location(root), message: "the document must be a mapping of settings")
        }
        walk(mapping, prefix: "", into: &assignments, problems: &problems)
        return (assignments, problems)
    }

    private func location(_ node: Node) -> String {
        "\(path):\(node.mark?.line ?? 0)"
    }

    private func walk(_ mapping: Node.Mapping, prefix: String, into assignments: inout [SettingAssignment], problems: inout [SettingError]) {
        for (keyNode, value) in mapping {
            let name = prefix + (keyNode.string ?? "")
            let source = location(keyNode)
            if SettingKey.named(name) == nil {
                if case .mapping(let section) = value, SettingKey.all.contains(where: { $0.name.hasPrefix(name + ".") }) {
                    walk(section, prefix: name + ".", into: &assignments, problems: &problems)
                } else {
                    problems.append(SettingError(key: name, source: source, message: Self.unknownKeyMessage(name)))
                }
                continue
            }
            switch value {
            case .scalar(let scalar):
                let text = scalar.string == "~" || (scalar.string == "null" && scalar.style == .plain) ? "" : scalar.string
                assignments.append(SettingAssignment(key: name, raw: .text(text), source: source))
            case .sequence(let sequence):
                var elements: [String] = []
                for element in sequence {
                    guard let text = element.string else {
                        problems.append(SettingError(key: name, source: location(element), message: "list elements must be plain values"))
                        continue
                    }
                    elements.append(text)
                }
                assignments.append(SettingAssignment(key: name, raw: .elements(elements), source: source))
            default:
                problems.append(SettingError(key: name, source: source, message: "expected a value, got a mapping"))
            }
        }
    }

    static func unknownKeyMessage(_ name: String) -> String {
        let close = SettingKey.all.map(\.name).filter { candidate in
            candidate.hasSuffix("." + name) || name.hasSuffix("." + candidate)
                || candidate.replacingOccurrences(of: "_", with: "-") == name.replacingOccurrences(of: "_", with: "-")
        }
        if let suggestion = close.first { return "unknown key (did you mean '\(suggestion)'?)" }
        return "unknown key"
    }

    static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return "\(problem) at line \(mark.line)"
        default:
            return "\(error)"
        }
    }
}
