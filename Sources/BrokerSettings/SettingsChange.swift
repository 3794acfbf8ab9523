/// What a reload (SIGHUP) finds changed between two readings of the settings, split by whether
/// the running broker can take it (docs/operations.md "Reloading"). Names only: a changed
/// value may be a secret, and the log lines made from this never carry values.
public struct SettingsChange: Sendable, Equatable {
    /// Changed settings that a reload puts in force, in the order of `SettingKey.all`.
    public var reloaded: [String] = []
    /// Changed settings that take effect only after a restart.
    public var needRestart: [String] = []

    public var isEmpty: Bool { reloaded.isEmpty && needRestart.isEmpty }

    public init(reloaded: [String] = [], needRestart: [String] = []) {
        self.reloaded = reloaded
        self.needRestart = needRestart
    }

    /// The settings whose value differs between `old` and `new`.
    public init(from old: BrokerSettings, to new: BrokerSettings) {
        // Turning TLS on or off changes what the listener speaks: only new files for a TLS
        // listener are a reload.
        let tlsSwitched = (old.tlsCertificate == nil) != (new.tlsCertificate == nil)
        for key in SettingKey.all where key.read(old) != key.read(new) {
            let isTLS = key.name.hasPrefix("tls.")
            if key.isReloadable && !(isTLS && tlsSwitched) {
                reloaded.append(key.name)
            } else {
                needRestart.append(key.name)
            }
        }
    }
}

extension SettingKey {
    /// Whether a running broker takes a new value on SIGHUP (`BrokerConfiguration.reloading(from:)`
    /// for the server's share, plus the log level); the others are read once at start.
    public var isReloadable: Bool { Self.reloadableNames.contains(name) }

    static let reloadableNames: Set<String> = [
        "auth.api-key", "auth.client-tokens", "auth.jwt-secret", "auth.jwt-public-key", "auth.jwt-audience",
        "auth.jwt-issuer", "auth.allow-anonymous", "auth.anonymous-subscribe", "auth.anonymous-publish",
        "auth.allowed-origins", "auth.allowed-hosts", "http.trusted-proxies",
        "tls.certificate", "tls.key",
        "limits.publish-rate", "limits.max-connections", "limits.max-connections-per-ip", "max-subscriptions",
        "http.idle-timeout", "http.max-batch-bytes", "http.max-batch-messages",
        "log.level", "log.access",
    ]
}
