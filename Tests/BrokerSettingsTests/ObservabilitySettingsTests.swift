import BrokerServer
import BrokerSettings
import Testing

/// `http.trusted-proxies` and `log.access`.
@Suite struct ObservabilitySettingsTests {
    @Test func defaultsTrustNoProxyAndLogNoRequests() throws {
        let settings = try SettingsLoader.resolve(configFile: nil, environment: [:], flags: [])
        #expect(settings.server.trustedProxies.isEmpty)
        #expect(settings.server.accessLog == false)
        #expect(SettingKey.named("http.trusted-proxies")?.environmentVariable == "BROKER_HTTP_TRUSTED_PROXIES")
        #expect(SettingKey.named("log.access")?.flag == "--log-access")
    }

    @Test func flagsAndEnvironmentSetThem() throws {
        let flags = try SettingsLoader.fromFlags(["--log-access", "true", "--http-trusted-proxies", "10.0.0.0/8"])
        let fromFlags = try SettingsLoader.resolve(configFile: nil, environment: [:], flags: flags)
        #expect(fromFlags.server.accessLog)
        #expect(fromFlags.server.trustedProxies.map(\.description) == ["10.0.0.0/8"])
        let fromEnvironment = try SettingsLoader.resolve(
            configFile: nil, environment: ["BROKER_HTTP_TRUSTED_PROXIES": "192.0.2.1, fd00::/8"], flags: [])
        #expect(fromEnvironment.server.trustedProxies.map(\.description) == ["192.0.2.1", "fd00::/8"])
    }

    @Test(arguments: ["proxy.example", "10.0.0.0/40", "10.0.0/8"])
    func badProxiesAreRefused(_ value: String) {
        #expect(throws: (any Error).self) {
            _ = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_HTTP_TRUSTED_PROXIES": value], flags: [])
        }
    }
}
