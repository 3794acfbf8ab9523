import Foundation

/// A saved connection profile (`broker-cli context save`), like `nats context`: what it takes to
/// reach one broker. Every field is optional; flags and environment variables override them.
struct CLIContext: Codable, Equatable {
    var description: String?
    var url: String?
    var token: String?
    var caFile: String?
    var certFile: String?
    var keyFile: String?
    var insecure: Bool?
    var apiKey: String?
    var apiURL: String?
}

/// Where contexts live: `$XDG_CONFIG_HOME/broker-cli` (else `~/.config/broker-cli`), one
/// `contexts/NAME.json` each and the selected name in `context.txt`.
struct ContextStore {
    let directory: URL

    init(directory: URL) {
        self.directory = directory
    }

    init(environment: [String: String]) {
        let base: URL
        if let xdg = environment["XDG_CONFIG_HOME"], xdg.hasPrefix("/") {
            base = URL(fileURLWithPath: xdg)
        } else {
            let home = environment["HOME"] ?? FileManager.default.homeDirectoryForCurrentUser.path
            base = URL(fileURLWithPath: home).appendingPathComponent(".config")
        }
        self.init(directory: base.appendingPathComponent("broker-cli"))
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var contextsDirectory: URL { directory.appendingPathComponent("contexts") }
    private var selectionFile: URL { directory.appendingPathComponent("context.txt") }

    func file(of name: String) -> URL { contextsDirectory.appendingPathComponent(name + ".json") }

    /// Names become file names: letters, digits, `.`, `_` and `-`, not starting with `.`.
    static func validate(name: String) throws(Failure) {
        let allowed = name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || "._-".unicodeScalars.contains($0)
        }
        guard !name.isEmpty, allowed, !name.hasPrefix("."), name.utf8.count <= 100 else {
            throw Failure(description: "invalid context name '\(name)' (letters, digits, '.', '_', '-'; not starting with '.')")
        }
    }

    func load(_ name: String) throws(Failure) -> CLIContext {
        try Self.validate(name: name)
        guard let data = FileManager.default.contents(atPath: file(of: name).path) else {
            throw Failure(description: "no context named '\(name)' (\(file(of: name).path))")
        }
        do {
            return try JSONDecoder().decode(CLIContext.self, from: data)
        } catch {
            throw Failure(description: "\(file(of: name).path) is not a valid context: \(error)")
        }
    }

    /// Writes the context readable by its owner only (it may hold a token and an API key).
    func save(_ context: CLIContext, as name: String) throws {
        try Self.validate(name: name)
        try FileManager.default.createDirectory(
            at: contextsDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(context)
        let path = file(of: name).path
        guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw Failure(description: "cannot write \(path)")
        }
    }

    func remove(_ name: String) throws {
        try Self.validate(name: name)
        guard FileManager.default.fileExists(atPath: file(of: name).path) else {
            throw Failure(description: "no context named '\(name)'")
        }
        try FileManager.default.removeItem(at: file(of: name))
        if selected == name { try? FileManager.default.removeItem(at: selectionFile) }
    }

    var names: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: contextsDirectory.path)) ?? []
        return files.filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.map { String($0.dropLast(5)) }.sorted()
    }

    /// The name `context select` chose, if any.
    var selected: String? {
        guard let data = FileManager.default.contents(atPath: selectionFile.path) else { return nil }
        let name = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return name.isEmpty ? nil : name
    }

    func select(_ name: String) throws {
        _ = try load(name)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data((name + "\n").utf8).write(to: selectionFile)
    }
}

/// The connection settings a command uses, after precedence: a flag, else its environment
/// variable, else the context (`--context`, else `BROKER_CONTEXT`, else the selected one), else
/// the default.
struct ConnectionSettings: Equatable {
    var url: String
    var token: String?
    var caFile: String?
    var certFile: String?
    var keyFile: String?
    var insecure: Bool
    var apiKey: String?
    var apiURL: String?
    /// The context the values came from, if any (for messages).
    var contextName: String?

    static let defaultURL = "ws://127.0.0.1:8080/ws"

    /// Which context applies: `--context`, else `BROKER_CONTEXT`, else the selected one.
    static func contextName(flag: String?, environment: [String: String], store: ContextStore) -> String? {
        flag ?? environment["BROKER_CONTEXT"].flatMap { $0.isEmpty ? nil : $0 } ?? store.selected
    }

    /// Resolves `flags` (what was given on the command line; `insecure` nil when not given)
    /// against the environment and the context.
    static func resolve(flags: CLIContext, contextFlag: String?, environment: [String: String], store: ContextStore)
        throws(ContextStore.Failure) -> ConnectionSettings
    {
        let name = contextName(flag: contextFlag, environment: environment, store: store)
        let context = try name.map { name throws(ContextStore.Failure) in try store.load(name) } ?? CLIContext()
        func pick(_ flag: String?, _ variable: String, _ saved: String?) -> String? {
            if let flag { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            return saved
        }
        return ConnectionSettings(
            url: pick(flags.url, "BROKER_URL", context.url) ?? defaultURL,
            token: pick(flags.token, "BROKER_TOKEN", context.token),
            caFile: pick(flags.caFile, "BROKER_CA_FILE", context.caFile),
            certFile: pick(flags.certFile, "BROKER_CERT_FILE", context.certFile),
            keyFile: pick(flags.keyFile, "BROKER_KEY_FILE", context.keyFile),
            insecure: flags.insecure ?? context.insecure ?? false,
            apiKey: pick(flags.apiKey, "BROKER_API_KEY", context.apiKey),
            apiURL: pick(flags.apiURL, "BROKER_API_URL", context.apiURL),
            contextName: name)
    }

    /// The HTTP API's base URL: `apiURL` when given, else the WebSocket URL with `ws`→`http`,
    /// `wss`→`https`, its query dropped and a final `/ws` path segment removed
    /// (`wss://h:8443/broker/ws?token=x` → `https://h:8443/broker`).
    var httpBaseURL: String {
        if let apiURL { return apiURL.hasSuffix("/") ? String(apiURL.dropLast()) : apiURL }
        var rest = Substring(url)
        let scheme: String
        if rest.hasPrefix("wss://") {
            scheme = "https://"
            rest = rest.dropFirst(6)
        } else {
            scheme = "http://"
            rest = rest.dropFirst(rest.hasPrefix("ws://") ? 5 : 0)
        }
        if let query = rest.firstIndex(where: { $0 == "?" || $0 == "#" }) { rest = rest[..<query] }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if let slash = rest.firstIndex(of: "/"), rest.hasSuffix("/ws"), rest.index(rest.endIndex, offsetBy: -3) >= slash {
            rest = rest.dropLast(3)
        }
        return scheme + rest
    }
}
