/// The release this code is: the one place that `broker --version`, `broker-cli --version`, the
/// `server` field of `welcome`, the `broker_build_info` metric and the documentation's examples
/// take it from (VersionTests checks the documents). Bump it with a CHANGELOG.md entry.
public enum BrokerVersion {
    public static let number = "0.9.0"
    /// What `welcome` names the server as.
    public static let serverName = "swift-broker/\(number)"
}
