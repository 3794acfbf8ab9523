import BrokerServer
import Testing

@testable import BrokerSettings

/// `admin.host`/`admin.port` and `sys.stats-interval`: names, defaults, and what they set.
@Suite struct AdminSettingsTests {
    @Test func adminListenerIsOffByDefaultAndOnLoopback() throws {
        let defaults = try SettingsLoader.resolve(configFile: nil, environment: [:], flags: [])
        #expect(defaults.server.adminPort == nil && defaults.server.adminHost == "127.0.0.1")
        #expect(defaults.server.sysStatsInterval == .seconds(1))
        #expect(SettingKey.named("admin.port")?.flag == "--admin-port")
        #expect(SettingKey.named("admin.host")?.environmentVariable == "BROKER_ADMIN_HOST")
        #expect(SettingKey.named("sys.stats-interval")?.flag == "--sys-stats-interval")
    }

    @Test func flagsAndEnvironmentSetThem() throws {
        let settings = try SettingsLoader.resolve(
            configFile: nil, environment: ["BROKER_ADMIN_HOST": "0.0.0.0", "BROKER_SYS_STATS_INTERVAL": "0"],
            flags: try SettingsLoader.fromFlags(["--admin-port", "9090"]))
        #expect(settings.server.adminPort == 9090 && settings.server.adminHost == "0.0.0.0")
        #expect(settings.server.sysStatsInterval == .zero)
        let off = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_ADMIN_PORT": "0"], flags: [])
        #expect(off.server.adminPort == nil)
    }

    /// An admin listener beyond loopback needs an operator credential: the API key or a JWT key.
    @Test func aPublicAdminListenerNeedsAnOperatorCredential() {
        var configuration = BrokerConfiguration()
        configuration.adminPort = 9090
        #expect(configuration.adminOpenOnPublicAddressProblem == nil)  // loopback
        configuration.adminHost = "0.0.0.0"
        configuration.clientTokens = ["t"]
        #expect(configuration.adminOpenOnPublicAddressProblem?.contains("admin.host 0.0.0.0") == true)
        configuration.jwtSecret = "s"
        #expect(configuration.adminOpenOnPublicAddressProblem == nil)
        configuration.jwtSecret = nil
        configuration.apiKey = "k"
        #expect(configuration.adminOpenOnPublicAddressProblem == nil)
        configuration.adminPort = nil
        configuration.apiKey = nil
        #expect(configuration.adminOpenOnPublicAddressProblem == nil)  // no admin listener
    }
}
