import Testing

import BrokerServer

@testable import BrokerSettings

/// The v1.1 auth settings: their exact names, flags and variables (independent test suites use
/// them), validation, and the open-broker-on-a-public-address rule.
@Suite struct AuthSettingsTests {
    @Test func namesFlagsAndVariablesAreTheContractsOnes() throws {
        for name in [
            "auth.jwt-secret", "auth.jwt-public-key", "auth.jwt-audience", "auth.jwt-issuer", "auth.allow-anonymous",
            "auth.anonymous-subscribe", "auth.anonymous-publish", "auth.allowed-origins", "auth.api-key", "auth.client-tokens",
        ] {
            #expect(SettingKey.named(name) != nil, "\(name)")
        }
        #expect(SettingKey.named("auth.jwt-secret")?.flag == "--auth-jwt-secret")
        #expect(SettingKey.named("auth.jwt-secret")?.environmentVariable == "BROKER_AUTH_JWT_SECRET")
        #expect(SettingKey.named("auth.jwt-secret")?.isSecret == true)
        #expect(SettingKey.named("auth.allowed-origins")?.flag == "--auth-allowed-origins")
    }

    @Test func flagsAndEnvironmentSetTheEngine() throws {
        let flags = try SettingsLoader.fromFlags([
            "--auth-jwt-secret", "s", "--auth-jwt-audience", "broker", "--auth-jwt-issuer", "me",
            "--auth-allowed-origins", "https://a.example", "--auth-allowed-origins", "*",
            "--auth-anonymous-subscribe", "public/#", "--auth-allow-anonymous", "true",
        ])
        let settings = try SettingsLoader.resolve(
            configFile: nil, environment: ["BROKER_AUTH_ANONYMOUS_PUBLISH": "up/+, in/#"], flags: flags)
        #expect(settings.server.jwtSecret == "s")
        #expect(settings.server.jwtAudience == "broker" && settings.server.jwtIssuer == "me")
        #expect(settings.server.allowedOrigins == ["https://a.example", "*"])
        #expect(settings.server.anonymousSubscribe == ["public/#"])
        #expect(settings.server.anonymousPublish == ["up/+", "in/#"])
        #expect(settings.server.allowAnonymous)
    }

    @Test func badValuesAreRefused() throws {
        #expect(throws: (any Error).self) {
            _ = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_AUTH_ANONYMOUS_SUBSCRIBE": "a/#/b"], flags: [])
        }
        #expect(throws: (any Error).self) {
            _ = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_AUTH_ALLOWED_ORIGINS": "evil.example"], flags: [])
        }
        #expect(throws: (any Error).self) {
            _ = try SettingsLoader.resolve(
                configFile: nil, environment: ["BROKER_AUTH_JWT_SECRET": "s", "BROKER_AUTH_JWT_PUBLIC_KEY": "/k.pem"], flags: [])
        }
    }

    @Test func openBrokerOnAPublicAddressIsAProblemUnlessAskedFor() {
        var configuration = BrokerConfiguration()
        #expect(configuration.openOnPublicAddressProblem == nil)  // 127.0.0.1
        for host in ["0.0.0.0", "::", "192.168.1.10", "broker.example"] {
            configuration.host = host
            #expect(configuration.openOnPublicAddressProblem != nil, "\(host)")
        }
        for host in ["localhost", "::1", "[::1]", "127.0.0.2"] {
            configuration.host = host
            #expect(configuration.openOnPublicAddressProblem == nil, "\(host)")
        }
        configuration.host = "0.0.0.0"
        configuration.allowAnonymous = true
        #expect(configuration.openOnPublicAddressProblem == nil)
        configuration.allowAnonymous = false
        configuration.jwtSecret = "s"
        #expect(configuration.openOnPublicAddressProblem == nil)
        configuration.jwtSecret = nil
        configuration.apiKey = "k"
        #expect(configuration.openOnPublicAddressProblem == nil)
    }
}
