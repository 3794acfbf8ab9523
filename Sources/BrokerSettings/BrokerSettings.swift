import BrokerJournal
import Foundation
import BrokerServer
import NIOCore

/// Everything `broker serve` can be told, resolved from defaults, a configuration file, the
/// environment and command-line flags (in that order, later wins).
///
/// Every setting is one entry of `SettingKey.all`: its name, type, default, documentation and
/// how it applies. The file loaders, the environment reader, the flag parser, `--help`,
/// `broker config check` and docs/configuration.md are all made from that table.
public struct BrokerSettings: Sendable {
    /// The server engine's settings.
    public var server = BrokerConfiguration()
    /// The journal's settings.
    public var journal = JournalConfiguration()
    /// Directory of the SQLite journal.
    public var dataDirectory = "./data"
    /// `--max-frame-bytes`, when given; otherwise frames may be as large as messages.
    public var maxFrameBytes: Int?
    /// swift-log level name.
    public var logLevel = "info"
    /// `text` (one line per event) or `json` (one JSON object per line).
    public var logFormat = "text"
    /// Whether `GET /metrics` is served and metrics are collected.
    public var metricsEnabled = true
    /// Seconds between two exports of the broker's figures to the metrics backend.
    public var metricsInterval = 10.0
    /// TLS certificate chain and key (both or neither).
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// Cluster mode: the PostgreSQL journal shared by every broker given the same URL (empty: the
    /// SQLite journal in `dataDirectory`).
    public var clusterPostgresURL = ""
    /// This broker's name in the cluster (empty: the host name).
    public var clusterNodeName = ""

    /// `clusterNodeName`, or the host name when it is empty.
    public var resolvedNodeName: String {
        clusterNodeName.isEmpty ? ProcessInfo.processInfo.hostName : clusterNodeName
    }

    public init() {}

    /// Checks what no single setting can: settings that go together.
    public func validate() throws(SettingError) {
        if (tlsCertificate == nil) != (tlsKey == nil) {
            throw SettingError(key: tlsCertificate == nil ? "tls.certificate" : "tls.key",
                message: "tls.certificate and tls.key go together: set both or neither")
        }
        if server.jwtSecret != nil, server.jwtPublicKeyPath != nil {
            throw SettingError(key: "auth.jwt-public-key",
                message: "auth.jwt-secret (HS256) and auth.jwt-public-key (RS256/ES256) exclude each other: set one")
        }
    }

    /// The server configuration with the derived values filled in.
    public var resolvedServer: BrokerConfiguration {
        var server = self.server
        server.maxFrameBytes = maxFrameBytes ?? server.maxMessageBytes
        if let tlsCertificate, let tlsKey {
            server.tls = .init(certificateChainPath: tlsCertificate, privateKeyPath: tlsKey)
        }
        return server
    }
}

/// A setting that could not be used: which key, where, and why.
public struct SettingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var key: String
    /// Where the value came from: `FILE:LINE`, `environment variable BROKER_…` or `flag --…`.
    public var source: String?
    public var message: String

    public init(key: String, source: String? = nil, message: String) {
        self.key = key
        self.source = source
        self.message = message
    }

    public var description: String {
        if let source { return "\(source): \(key): \(message)" }
        return "\(key): \(message)"
    }
}
