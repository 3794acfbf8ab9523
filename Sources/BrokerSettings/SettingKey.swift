import BrokerJournal
import BrokerProtocol
import BrokerServer
import Logging
import NIOCore

/// The value of one setting, parsed according to its `SettingKey.Kind`.
public enum SettingValue: Sendable, Equatable {
    case int(Int)
    case double(Double)
    case string(String)
    case bool(Bool)
    case list([String])
}

/// One setting: the single place that says its name, type, default, documentation and what it
/// sets. The name is the key in configuration files (`retain.max-age` is `max-age` in a
/// `retain` section or table); the flag and the environment variable are derived from it
/// (`--retain-max-age`, `BROKER_RETAIN_MAX_AGE`).
///
/// To add a setting, add one entry to `all`: everything else (files, environment, flags,
/// `--help`, `config check`, docs/configuration.md) follows.
public struct SettingKey: Sendable {
    public enum Kind: Sendable {
        /// An integer within bounds.
        case integer(ClosedRange<Int>)
        /// A byte count: an integer, optionally with a KiB, MiB or GiB suffix.
        case bytes(ClosedRange<Int>)
        /// A number of seconds (fractions allowed), from a nanosecond to `SettingKey.maxSeconds`.
        case seconds
        /// A number of seconds as `seconds`, or 0 (off).
        case secondsOrZero
        case string
        case bool
        /// One of the listed words.
        case choice([String])
        /// Several strings: a sequence (YAML) or array (TOML) in files, a repeated flag on the
        /// command line, elements separated by commas (or whitespace) in the environment
        /// (`listElements(_:)`).
        case list
    }

    public let name: String
    public let kind: Kind
    /// What it is for, one or two sentences (shown by `--help` and in docs/configuration.md).
    public let help: String
    /// Placeholder for the value in `--help` and the docs.
    public let valueName: String
    /// Whether the value is a credential (an API key, tokens): `broker config show` prints
    /// `<redacted>` instead of it.
    public let isSecret: Bool
    /// For a list whose elements contain a comma of their own: whether a piece between
    /// separators continues the element before it (`retain.override`'s `FILTER=N,AGE`).
    let continuesElement: (@Sendable (Substring) -> Bool)?
    let apply: @Sendable (inout BrokerSettings, SettingValue) throws(SettingProblem) -> Void
    /// The current value, as it is written in a configuration file (empty when unset; a list's
    /// elements one per line).
    let read: @Sendable (BrokerSettings) -> String

    /// `--retain-max-age` for `retain.max-age`.
    public var flag: String { "--" + name.replacingOccurrences(of: ".", with: "-") }
    /// `BROKER_RETAIN_MAX_AGE` for `retain.max-age`.
    public var environmentVariable: String {
        "BROKER_" + name.uppercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
    }
    /// The default, as written in a configuration file (empty when unset by default).
    public var defaultValue: String { read(BrokerSettings()) }

    init(
        _ name: String, _ kind: Kind, valueName: String? = nil, secret: Bool = false,
        continuesElement: (@Sendable (Substring) -> Bool)? = nil, help: String,
        apply: @escaping @Sendable (inout BrokerSettings, SettingValue) throws(SettingProblem) -> Void,
        read: @escaping @Sendable (BrokerSettings) -> String
    ) {
        self.name = name
        self.kind = kind
        self.isSecret = secret
        self.continuesElement = continuesElement
        self.help = help
        self.apply = apply
        self.read = read
        switch kind {
        case .integer, .bytes: self.valueName = valueName ?? "n"
        case .seconds, .secondsOrZero: self.valueName = valueName ?? "seconds"
        case .string: self.valueName = valueName ?? "string"
        case .bool: self.valueName = valueName ?? "true|false"
        case .choice(let words): self.valueName = valueName ?? words.joined(separator: "|")
        case .list: self.valueName = valueName ?? "string"
        }
    }

    /// Parses a value written as text (environment, flags, file scalars).
    public func parse(_ text: String) throws(SettingProblem) -> SettingValue {
        let text = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .integer(let range):
            guard let value = Int(text.replacingOccurrences(of: "_", with: "")) else {
                throw SettingProblem("expected an integer, got '\(text)'")
            }
            guard range.contains(value) else { throw SettingProblem("must be \(Self.describe(range)), got \(value)") }
            return .int(value)
        case .bytes(let range):
            guard let value = Self.parseBytes(text) else {
                throw SettingProblem("expected a byte count (e.g. 1048576 or 1MiB), got '\(text)'")
            }
            guard range.contains(value) else { throw SettingProblem("must be \(Self.describe(range)) bytes, got \(value)") }
            return .int(value)
        case .seconds, .secondsOrZero:
            guard let value = Double(text.hasSuffix("s") ? String(text.dropLast()) : text), value.isFinite else {
                throw SettingProblem("expected a number of seconds, got '\(text)'")
            }
            if case .secondsOrZero = kind, value == 0 { return .double(0) }
            guard value > 0 else { throw SettingProblem("must be greater than 0 seconds, got \(text)") }
            // Durations become NIO TimeAmounts and Durations in nanoseconds (Int64): a larger
            // value would trap when converted, a smaller one would round to zero.
            guard value <= Self.maxSeconds else { throw SettingProblem("must be at most \(Int(Self.maxSeconds)) seconds, got \(text)") }
            guard value >= 1e-9 else { throw SettingProblem("must be at least one nanosecond, got \(text)") }
            return .double(value)
        case .string:
            return .string(text)
        case .bool:
            switch text.lowercased() {
            case "true", "yes", "on", "1": return .bool(true)
            case "false", "no", "off", "0": return .bool(false)
            default: throw SettingProblem("expected true or false, got '\(text)'")
            }
        case .choice(let words):
            guard words.contains(text) else {
                throw SettingProblem("expected one of \(words.joined(separator: ", ")), got '\(text)'")
            }
            return .string(text)
        case .list:
            return .list(listElements(text))
        }
    }

    /// The longest duration a setting takes: about 31 years, well inside the ±292 years that
    /// 64-bit nanoseconds hold.
    public static let maxSeconds: Double = 1_000_000_000

    /// The elements of a list written as one string (an environment variable, or a single string
    /// in a file where a list goes): separated by commas, whitespace or both; empty pieces are
    /// dropped. `a,b`, `a, b` and `a b` are the same two elements. Where an element has a comma
    /// of its own (`retain.override`: `logs/#=100,3600`), a piece that cannot start an element
    /// joins the one before it: `logs/#=100,3600,tmp/#=1` is two overrides.
    public func listElements(_ text: String) -> [String] {
        var elements: [String] = []
        for piece in text.split(whereSeparator: { $0 == "," || $0.isWhitespace }) {
            if let continuesElement, !elements.isEmpty, continuesElement(piece) {
                elements[elements.count - 1] += "," + String(piece)
            } else {
                elements.append(String(piece))
            }
        }
        return elements
    }

    static func parseBytes(_ text: String) -> Int? {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1)]
        var digits = text.replacingOccurrences(of: "_", with: "")
        var multiplier = 1
        for (suffix, factor) in units where digits.hasSuffix(suffix) {
            digits = String(digits.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            multiplier = factor
            break
        }
        guard let value = Int(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        if range.upperBound == Int.max { return "at least \(range.lowerBound)" }
        return "from \(range.lowerBound) to \(range.upperBound)"
    }

    /// The key named `name`, if any.
    public static func named(_ name: String) -> SettingKey? { all.first { $0.name == name } }

    /// The key whose flag is `flag` (`--retain-max-age`), if any.
    public static func flagged(_ flag: String) -> SettingKey? { all.first { $0.flag == flag } }
}

/// Why a value does not fit its setting (the key and where are added by the caller).
public struct SettingProblem: Error, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

// MARK: - Accessor helpers for the table

private func int(_ value: SettingValue) -> Int { if case .int(let v) = value { return v }; return 0 }
private func double(_ value: SettingValue) -> Double { if case .double(let v) = value { return v }; return 0 }
private func string(_ value: SettingValue) -> String { if case .string(let v) = value { return v }; return "" }
private func bool(_ value: SettingValue) -> Bool { if case .bool(let v) = value { return v }; return false }
private func list(_ value: SettingValue) -> [String] { if case .list(let v) = value { return v }; return [] }
private func seconds(_ value: SettingValue) -> TimeAmount { .nanoseconds(Int64(double(value) * 1e9)) }
private func show(_ amount: TimeAmount) -> String { show(Double(amount.nanoseconds) / 1e9) }
private func show(_ seconds: Double) -> String {
    seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
}
private func show(_ duration: Duration) -> String {
    show(Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
}

extension SettingKey {
    /// Every setting, in the order of `--help` and docs/configuration.md.
    public static let all: [SettingKey] = [
        // Listener
        SettingKey(
            "host", .string, valueName: "address", help: "Address to listen on (0.0.0.0 for every interface).",
            apply: { $0.server.host = string($1) }, read: { $0.server.host }),
        SettingKey(
            "port", .integer(0...65_535), help: "Port to listen on (0 picks a free port).",
            apply: { $0.server.port = int($1) }, read: { String($0.server.port) }),
        SettingKey(
            "ws-path", .string, valueName: "path", help: "Path of the WebSocket endpoint.",
            apply: { settings, value throws(SettingProblem) in
                guard string(value).hasPrefix("/") else { throw SettingProblem("must start with /") }
                settings.server.webSocketPath = string(value)
            }, read: { $0.server.webSocketPath }),
        SettingKey(
            "echo-path", .string, valueName: "path",
            help: "Opt-in echo endpoint for conformance testing (e.g. /echo); off when empty.",
            apply: { settings, value throws(SettingProblem) in
                let path = string(value)
                guard path.isEmpty || path.hasPrefix("/") else { throw SettingProblem("must start with /") }
                settings.server.echoPath = path.isEmpty ? nil : path
            }, read: { $0.server.echoPath ?? "" }),
        SettingKey(
            "admin.host", .string, valueName: "address",
            help: "Address of the admin listener (with admin.port). Not a loopback address: needs auth.api-key or a JWT key, else the broker refuses to start (exit 78).",
            apply: { $0.server.adminHost = string($1) }, read: { $0.server.adminHost }),
        SettingKey(
            "admin.port", .integer(0...65_535),
            help: "Port of the admin listener; 0: none. When set, /api/stats, /api/connections, /api/topics, /metrics and /dashboard are served there only (404 on port); it also serves the probes and the client routes.",
            apply: { $0.server.adminPort = int($1) == 0 ? nil : int($1) }, read: { String($0.server.adminPort ?? 0) }),
        SettingKey(
            "threads", .integer(0...1_024),
            help: "Event loop threads; 0 means one per core.",
            apply: { $0.server.eventLoopThreads = int($1) == 0 ? System.coreCount : int($1) },
            read: { $0.server.eventLoopThreads == System.coreCount ? "0" : String($0.server.eventLoopThreads) }),

        // Journal
        SettingKey(
            "data-dir", .string, valueName: "path",
            help: "Directory of the SQLite journal of retained messages (locked: one broker per directory).",
            apply: { $0.dataDirectory = string($1) }, read: { $0.dataDirectory }),
        SettingKey(
            "durability", .choice(["normal", "full"]),
            help: "'normal' survives a crash of the broker process (kill -9); 'full' fsyncs every commit and survives power loss.",
            apply: { $0.journal.durability = string($1) == "full" ? .full : .normal },
            read: { $0.journal.durability == .full ? "full" : "normal" }),
        SettingKey(
            "retain.max-messages", .integer(1...Int.max), help: "Retained messages kept per topic.",
            apply: { $0.journal.retention.maxMessagesPerTopic = int($1) },
            read: { String($0.journal.retention.maxMessagesPerTopic) }),
        SettingKey(
            "retain.max-age", .seconds, help: "Retained messages older than this are pruned (604800 s = 7 days).",
            apply: { $0.journal.retention.maxAge = .nanoseconds(Int64(double($1) * 1e9)) },
            read: { show($0.journal.retention.maxAge) }),
        SettingKey(
            "retain.max-bytes", .bytes(1...Int.max), help: "Journal-wide budget for the journal database on disk (its pages in use: payloads, topics, rows and indexes); the oldest messages go first. In cluster mode an estimate, payload bytes plus 96 per message (docs/cluster.md, Limits).",
            apply: { $0.journal.retention.maxBytes = Int64(int($1)) },
            read: { String($0.journal.retention.maxBytes) }),
        SettingKey(
            "retain.override", .list, valueName: "filter=messages[,seconds]",
            // FILTER=MESSAGES starts an override; the AGE_SECONDS after its comma has no '='.
            continuesElement: { !$0.contains("=") },
            help: "Per-filter retention, first match wins: FILTER=MESSAGES[,AGE_SECONDS], e.g. 'logs/#=100,3600'. Repeat the flag for several; in the environment, separate them with commas: 'logs/#=100,3600,tmp/#=1'.",
            apply: { settings, value throws(SettingProblem) in
                settings.journal.retention.overrides = try list(value).map(parseRetentionOverride)
            },
            read: { settings in
                settings.journal.retention.overrides.map { override in
                    var text = "\(override.filter)=\(override.maxMessagesPerTopic ?? 0)"
                    if let age = override.maxAge { text += ",\(show(age))" }
                    return text
                }.joined(separator: "\n")
            }),

        // Limits
        SettingKey(
            "max-message-bytes", .bytes(1...Int(Int32.max)),
            help: "Largest message a client may send (announced in welcome; larger closes with 1009); also the largest HTTP publish body.",
            apply: { $0.server.maxMessageBytes = int($1) }, read: { String($0.server.maxMessageBytes) }),
        SettingKey(
            "max-frame-bytes", .bytes(0...Int(Int32.max)),
            help: "Largest single WebSocket frame a client may send; 0 means max-message-bytes.",
            apply: { $0.maxFrameBytes = int($1) == 0 ? nil : int($1) }, read: { String($0.maxFrameBytes ?? 0) }),
        SettingKey(
            "max-topic-bytes", .integer(1...65_535), help: "Longest topic name or filter, in bytes.",
            apply: { $0.server.maxTopicBytes = int($1) }, read: { String($0.server.maxTopicBytes) }),
        SettingKey(
            "max-topic-levels", .integer(1...1_024),
            help: "Most levels of a topic name or filter (a/b/c has three); deeper ones, and topics with control characters, get invalid_topic.",
            apply: { $0.server.maxTopicLevels = int($1) }, read: { String($0.server.maxTopicLevels) }),
        SettingKey(
            "max-subscriptions", .integer(1...Int.max), help: "Subscriptions one connection may hold.",
            apply: { $0.server.maxSubscriptionsPerConnection = int($1) },
            read: { String($0.server.maxSubscriptionsPerConnection) }),
        SettingKey(
            "outbound-high-water", .bytes(1...Int.max),
            help: "Bytes queued for one connection above which it is behind; behind for slow-consumer-timeout, it is closed (1008).",
            apply: { $0.server.outboundHighWaterBytes = int($1) }, read: { String($0.server.outboundHighWaterBytes) }),
        SettingKey(
            "slow-consumer-timeout", .seconds,
            help: "Seconds a connection may stay behind (above outbound-high-water) before it is closed as a slow consumer (1008).",
            apply: { $0.server.slowConsumerTimeout = seconds($1) }, read: { show($0.server.slowConsumerTimeout) }),
        SettingKey(
            "max-outbound-bytes", .bytes(1...Int.max),
            help: "Bytes queued for one connection past which it is closed as a slow consumer (1008) at once.",
            apply: { $0.server.maxOutboundBytes = int($1) }, read: { String($0.server.maxOutboundBytes) }),
        SettingKey(
            "max-flush-delay-ms", .integer(0...1_000),
            help: "The longest a busy event loop holds written frames so that each write syscall carries more of them; it holds only while frames keep arriving, and an idle loop flushes every tick regardless (0: always every tick).",
            apply: { $0.server.maxFlushDelay = .milliseconds(Int64(int($1))) },
            read: { String($0.server.maxFlushDelay.nanoseconds / 1_000_000) }),
        SettingKey(
            "replay-page-size", .integer(1...100_000), help: "Retained messages read from the journal per replay page.",
            apply: { $0.server.replayPageSize = int($1) }, read: { String($0.server.replayPageSize) }),

        // Limits against abuse (PROTOCOL.md, v1.1)
        SettingKey(
            "limits.publish-rate", .integer(0...1_000_000_000),
            help: "Publishes per second one connection may make, with a burst of as many; over it a publish gets error rate_limited and is dropped. 0: no limit.",
            apply: { $0.server.publishRate = int($1) }, read: { String($0.server.publishRate) }),
        SettingKey(
            "limits.max-connections", .integer(0...Int(Int32.max)),
            help: "WebSocket connections the broker holds at once; an upgrade past it answers 503. 0: the open-file limit minus headroom for the journal and plain HTTP (/healthz).",
            apply: { $0.server.maxConnections = int($1) }, read: { String($0.server.maxConnections) }),
        SettingKey(
            "limits.max-connections-per-ip", .integer(0...Int(Int32.max)),
            help: "WebSocket connections from one IP address at once; an upgrade past it answers 503. 0: no limit. Behind a reverse proxy, list it in http.trusted-proxies so that each client counts for its own address.",
            apply: { $0.server.maxConnectionsPerIP = int($1) }, read: { String($0.server.maxConnectionsPerIP) }),
        SettingKey(
            "limits.max-pending-retained", .integer(1...Int(Int32.max)),
            help: "Retained publishes of one connection waiting for the journal; at this many the broker stops reading from it until the journal catches up (no error, no loss).",
            apply: { $0.server.maxPendingRetained = int($1) }, read: { String($0.server.maxPendingRetained) }),
        SettingKey(
            "limits.max-pending-retained-bytes", .bytes(1...Int.max),
            help: "Bytes of retained publishes of all connections waiting for the journal (payload + topic + 128 each); past it, connections with one waiting stop being read until the journal catches up.",
            apply: { $0.server.maxPendingRetainedBytes = int($1) }, read: { String($0.server.maxPendingRetainedBytes) }),

        // Keepalive and lifecycle
        SettingKey(
            "ping-interval", .seconds, help: "Seconds of silence before the broker pings a connection.",
            apply: { $0.server.pingInterval = seconds($1) }, read: { show($0.server.pingInterval) }),
        SettingKey(
            "pong-timeout", .seconds, help: "Seconds a ping may stay unanswered, counted from when it left the broker (not while it waits behind data the client is still reading), before the connection is closed.",
            apply: { $0.server.pongTimeout = seconds($1) }, read: { show($0.server.pongTimeout) }),
        SettingKey(
            "close-timeout", .seconds, help: "Seconds the broker waits for the client's close frame after sending its own.",
            apply: { $0.server.closeTimeout = seconds($1) }, read: { show($0.server.closeTimeout) }),
        SettingKey(
            "shutdown-grace", .seconds,
            help: "Seconds a graceful shutdown (SIGTERM, SIGINT) waits for clients to close after the last 1001 close frame (the end of lame-duck-duration); those still connected are then dropped and the journal is flushed.",
            apply: { $0.server.shutdownGracePeriod = seconds($1) }, read: { show($0.server.shutdownGracePeriod) }),
        SettingKey(
            "lame-duck-duration", .secondsOrZero,
            help: "Seconds over which a graceful shutdown spreads the clients' close frames (1001), the i-th of n clients at i*duration/n, so that they do not all reconnect elsewhere in the same second; the listener stops accepting at once, and shutdown-grace counts from the end of this window. 0: every client at once.",
            apply: { $0.server.lameDuckDuration = seconds($1) }, read: { show($0.server.lameDuckDuration) }),

        // HTTP API
        SettingKey(
            "http.idle-timeout", .seconds,
            help: "Seconds a plain HTTP connection may take to send a request, or stay idle between requests.",
            apply: { $0.server.httpIdleTimeout = seconds($1) }, read: { show($0.server.httpIdleTimeout) }),
        SettingKey(
            "http.max-batch-bytes", .bytes(1...Int(Int32.max)), help: "Largest body of a batch publish (POST /api/publish with a JSON array).",
            apply: { $0.server.maxBatchBytes = int($1) }, read: { String($0.server.maxBatchBytes) }),
        SettingKey(
            "http.max-body-bytes-in-flight", .bytes(1...Int.max),
            help: "HTTP request body bytes held at once over all connections (declared lengths count from the head); a request past it gets 503 before its body is read.",
            apply: { $0.server.maxHTTPBodyBytesInFlight = int($1) }, read: { String($0.server.maxHTTPBodyBytesInFlight) }),
        SettingKey(
            "http.max-batch-messages", .integer(1...1_000_000), help: "Most messages in one batch publish.",
            apply: { $0.server.maxBatchMessages = int($1) }, read: { String($0.server.maxBatchMessages) }),
        SettingKey(
            "http.trusted-proxies", .list, valueName: "address",
            help: "Reverse proxies (IP addresses or CIDR blocks, e.g. 10.0.0.0/8) whose X-Forwarded-For or Forwarded header names the client, for logs, the per-IP limit and /api/connections. Empty: those headers are never believed.",
            apply: { settings, value throws(SettingProblem) in
                var blocks: [AddressBlock] = []
                for text in list(value) {
                    guard let block = AddressBlock(text) else {
                        throw SettingProblem("'\(text)': expected an IP address or a CIDR block such as 10.0.0.0/8")
                    }
                    blocks.append(block)
                }
                settings.server.trustedProxies = blocks
            }, read: { $0.server.trustedProxies.map(\.description).joined(separator: "\n") }),

        // Cluster mode (docs/cluster.md)
        SettingKey(
            "cluster.postgres-url", .string, valueName: "url", secret: true,
            help: "Cluster mode: brokers given the same PostgreSQL URL (postgres://user:password@host:port/database?sslmode=disable|prefer|require) share one journal, its offsets and epoch, and deliver each other's publishes; empty: the SQLite journal in data-dir.",
            apply: { settings, value throws(SettingProblem) in
                let url = string(value)
                guard url.isEmpty || url.hasPrefix("postgres://") || url.hasPrefix("postgresql://") else {
                    throw SettingProblem("must be a postgres:// URL")
                }
                settings.clusterPostgresURL = url
            }, read: { $0.clusterPostgresURL }),
        SettingKey(
            "cluster.node-name", .string, valueName: "name",
            help: "This broker's name in the cluster, sent in welcome as 'node'; empty: the host name.",
            apply: { $0.clusterNodeName = string($1) }, read: { $0.clusterNodeName }),

        // Authentication
        SettingKey(
            "auth.api-key", .string, valueName: "key", secret: true,
            help: "API key required on /api/* and /metrics (Authorization: Bearer KEY or X-API-Key: KEY); open when empty. Prefer the environment variable to a flag (flags show in ps).",
            apply: { $0.server.apiKey = string($1).isEmpty ? nil : string($1) }, read: { $0.server.apiKey ?? "" }),
        SettingKey(
            "auth.client-tokens", .list, valueName: "token", secret: true,
            help: "Tokens accepted on WebSocket upgrades (Authorization: Bearer TOKEN or ?token=TOKEN; the API key is accepted too); open when empty.",
            apply: { $0.server.clientTokens = list($1) }, read: { $0.server.clientTokens.joined(separator: "\n") }),
        SettingKey(
            "auth.jwt-secret", .string, valueName: "secret", secret: true,
            help: "HS256 secret: WebSocket clients may present a JWT signed with it (docs/security.md). Use 32 random bytes or more; prefer the environment variable to a flag.",
            apply: { $0.server.jwtSecret = string($1).isEmpty ? nil : string($1) }, read: { $0.server.jwtSecret ?? "" }),
        SettingKey(
            "auth.jwt-public-key", .string, valueName: "file",
            help: "PEM public key file for JWTs signed with RS256 (an RSA key) or ES256 (a P-256 key); not with auth.jwt-secret.",
            apply: { $0.server.jwtPublicKeyPath = string($1).isEmpty ? nil : string($1) }, read: { $0.server.jwtPublicKeyPath ?? "" }),
        SettingKey(
            "auth.jwt-audience", .string, valueName: "aud",
            help: "When set, a JWT's aud claim must contain this value.",
            apply: { $0.server.jwtAudience = string($1).isEmpty ? nil : string($1) }, read: { $0.server.jwtAudience ?? "" }),
        SettingKey(
            "auth.jwt-issuer", .string, valueName: "iss",
            help: "When set, a JWT's iss claim must equal this value.",
            apply: { $0.server.jwtIssuer = string($1).isEmpty ? nil : string($1) }, read: { $0.server.jwtIssuer ?? "" }),
        SettingKey(
            "auth.allow-anonymous", .bool,
            help: "Serve an open broker (no credentials configured) on a non-loopback host on purpose; without it that refuses to start (exit 78). With credentials configured it changes nothing: clients without credentials get the anonymous lists.",
            apply: { $0.server.allowAnonymous = bool($1) }, read: { String($0.server.allowAnonymous) }),
        SettingKey(
            "auth.anonymous-subscribe", .list, valueName: "filter",
            help: "Filters a client without credentials may subscribe to (a subscription must be covered by one). Empty with auth configured: no anonymous clients.",
            apply: { settings, value throws(SettingProblem) in
                settings.server.anonymousSubscribe = try validFilters(list(value))
            }, read: { $0.server.anonymousSubscribe.joined(separator: "\n") }),
        SettingKey(
            "auth.anonymous-publish", .list, valueName: "filter",
            help: "Filters a client without credentials may publish to (the topic must match one).",
            apply: { settings, value throws(SettingProblem) in
                settings.server.anonymousPublish = try validFilters(list(value))
            }, read: { $0.server.anonymousPublish.joined(separator: "\n") }),
        SettingKey(
            "auth.allowed-origins", .list, valueName: "origin",
            help: "Browser origins (scheme://host[:port], or * for any) that may open WebSockets and call the HTTP API (CORS); empty: the same origin only. Their hosts are also accepted in Host on a loopback listener.",
            apply: { settings, value throws(SettingProblem) in
                for origin in list(value) where origin != "*" && !origin.contains("://") {
                    throw SettingProblem("'\(origin)': expected scheme://host[:port] or *")
                }
                settings.server.allowedOrigins = list(value)
            }, read: { $0.server.allowedOrigins.joined(separator: "\n") }),
        SettingKey(
            "auth.allowed-hosts", .list, valueName: "host",
            help: "Host header values (name or name:port, or * for any) a loopback listener answers besides localhost, 127.0.0.1 and [::1]: the public names of a reverse proxy that passes Host on. Others get 421 (DNS rebinding guard).",
            apply: { $0.server.allowedHosts = list($1) }, read: { $0.server.allowedHosts.joined(separator: "\n") }),

        // TLS
        SettingKey(
            "tls.certificate", .string, valueName: "file",
            help: "PEM certificate chain; with tls.key the listener speaks only TLS 1.2+ (wss://, https://).",
            apply: { $0.tlsCertificate = string($1).isEmpty ? nil : string($1) }, read: { $0.tlsCertificate ?? "" }),
        SettingKey(
            "tls.key", .string, valueName: "file", help: "PEM private key of the certificate.",
            apply: { $0.tlsKey = string($1).isEmpty ? nil : string($1) }, read: { $0.tlsKey ?? "" }),

        // Observability
        SettingKey(
            "log.level", .choice(Logger.Level.allCases.map(\.rawValue)), help: "Least severe log level written.",
            apply: { $0.logLevel = string($1) }, read: { $0.logLevel }),
        SettingKey(
            "log.format", .choice(["text", "json"]), help: "'text': one readable line per event; 'json': one JSON object per line.",
            apply: { $0.logFormat = string($1) }, read: { $0.logFormat }),
        SettingKey(
            "log.access", .bool,
            help: "Log one line per HTTP request (\"http request\": method, path without the query, status, client address, milliseconds), at info level.",
            apply: { $0.server.accessLog = bool($1) }, read: { String($0.server.accessLog) }),
        SettingKey(
            "compression.enabled", .bool,
            help: "Accept permessage-deflate (RFC 7692) from clients that offer it; a publish is compressed once for all of them.",
            apply: { $0.server.compressionEnabled = bool($1) }, read: { String($0.server.compressionEnabled) }),
        SettingKey(
            "compression.level", .integer(1...9), help: "zlib compression level (1 fastest, 9 smallest).",
            apply: { $0.server.compressionLevel = int($1) }, read: { String($0.server.compressionLevel) }),
        SettingKey(
            "compression.threshold", .bytes(0...Int(Int32.max)),
            help: "Message bodies smaller than this are sent uncompressed (deflate rarely pays below ~128 bytes).",
            apply: { $0.server.compressionThresholdBytes = int($1) }, read: { String($0.server.compressionThresholdBytes) }),
        SettingKey(
            "metrics.enabled", .bool, help: "Serve Prometheus metrics on GET /metrics.",
            apply: { $0.metricsEnabled = bool($1) }, read: { String($0.metricsEnabled) }),
        SettingKey(
            "metrics.interval", .seconds, help: "Seconds between two exports of the gauges and counters (a scrape exports too).",
            apply: { $0.metricsInterval = double($1) }, read: { show($0.metricsInterval) }),
        SettingKey(
            "sys.stats-interval", .integer(0...86_400), valueName: "seconds",
            help: "Seconds between two publishes of the broker's figures (the JSON of /api/stats with rates) to $sys/broker/stats; 0: never. Subscribers need a permission covering it ($sys/#).",
            apply: { $0.server.sysStatsInterval = .seconds(Int64(int($1))) },
            read: { String($0.server.sysStatsInterval.nanoseconds / 1_000_000_000) }),
    ]
}

/// Each element a valid topic filter.
func validFilters(_ filters: [String]) throws(SettingProblem) -> [String] {
    for filter in filters {
        do { try Topic.validateFilter(filter) } catch { throw SettingProblem("'\(filter)': invalid filter: \(error)") }
    }
    return filters
}

/// Parses `FILTER=MESSAGES[,AGE_SECONDS]`.
func parseRetentionOverride(_ spec: String) throws(SettingProblem) -> RetentionPolicy.Override {
    let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
    let limits = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : []
    guard parts.count == 2, !parts[0].isEmpty, (1...2).contains(limits.count),
        let messages = Int(limits[0]), messages > 0
    else {
        throw SettingProblem("'\(spec)': expected FILTER=MESSAGES[,AGE_SECONDS]")
    }
    do { try Topic.validateFilter(parts[0]) } catch {
        throw SettingProblem("'\(spec)': invalid filter: \(error)")
    }
    var age: Duration?
    if limits.count == 2 {
        guard let seconds = Double(limits[1]), seconds >= 0.001, seconds <= SettingKey.maxSeconds else {
            throw SettingProblem("'\(spec)': AGE_SECONDS must be a number from 0.001 to \(Int(SettingKey.maxSeconds))")
        }
        age = .milliseconds(Int64(seconds * 1000))
    }
    return RetentionPolicy.Override(filter: parts[0], maxMessagesPerTopic: messages, maxAge: age)
}
