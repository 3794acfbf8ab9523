import Foundation
import Testing

import BrokerServer

@testable import BrokerSettings

/// The settings of the limits against abuse (PROTOCOL.md, "Limits against abuse"): their exact
/// names, flags and variables, defaults, and each source reaching the engine's configuration.
@Suite struct LimitSettingsTests {
    @Test func namesFlagsVariablesAndDefaults() throws {
        let expected: [(name: String, flag: String, variable: String, defaultValue: String)] = [
            ("max-topic-levels", "--max-topic-levels", "BROKER_MAX_TOPIC_LEVELS", "32"),
            ("limits.publish-rate", "--limits-publish-rate", "BROKER_LIMITS_PUBLISH_RATE", "0"),
            ("limits.max-connections", "--limits-max-connections", "BROKER_LIMITS_MAX_CONNECTIONS", "0"),
            ("limits.max-connections-per-ip", "--limits-max-connections-per-ip", "BROKER_LIMITS_MAX_CONNECTIONS_PER_IP", "1000"),
            ("limits.max-pending-retained", "--limits-max-pending-retained", "BROKER_LIMITS_MAX_PENDING_RETAINED", "1024"),
            (
                "limits.max-pending-retained-bytes", "--limits-max-pending-retained-bytes", "BROKER_LIMITS_MAX_PENDING_RETAINED_BYTES",
                "67108864"
            ),
            ("http.max-body-bytes-in-flight", "--http-max-body-bytes-in-flight", "BROKER_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "67108864"),
        ]
        for setting in expected {
            let key = try #require(SettingKey.named(setting.name))
            #expect(key.flag == setting.flag)
            #expect(key.environmentVariable == setting.variable)
            #expect(key.defaultValue == setting.defaultValue, "\(setting.name)")
        }
    }

    @Test func flagsReachTheEngine() throws {
        let flags = try SettingsLoader.fromFlags([
            "--max-topic-levels", "8", "--limits-publish-rate", "50", "--limits-max-connections", "100",
            "--limits-max-connections-per-ip", "0", "--limits-max-pending-retained", "64",
            "--limits-max-pending-retained-bytes", "1MiB", "--http-max-body-bytes-in-flight", "2MiB",
        ])
        let server = try SettingsLoader.resolve(configFile: nil, environment: [:], flags: flags).resolvedServer
        #expect(server.maxTopicLevels == 8)
        #expect(server.publishRate == 50)
        #expect(server.maxConnections == 100)
        #expect(server.maxConnectionsPerIP == 0)
        #expect(server.maxPendingRetained == 64)
        #expect(server.maxPendingRetainedBytes == 1 << 20)
        #expect(server.maxHTTPBodyBytesInFlight == 2 << 20)
    }

    @Test func environmentAndFilesReachTheEngine() throws {
        let environment = ["BROKER_LIMITS_PUBLISH_RATE": "7", "BROKER_MAX_TOPIC_LEVELS": "4"]
        let fromEnvironment = try SettingsLoader.resolve(configFile: nil, environment: environment, flags: []).server
        #expect(fromEnvironment.publishRate == 7 && fromEnvironment.maxTopicLevels == 4)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-limits-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let toml = directory.appendingPathComponent("broker.toml").path
        try "max-topic-levels = 5\n[limits]\npublish-rate = 9\nmax-connections-per-ip = 3\n[http]\nmax-body-bytes-in-flight = \"1KiB\"\n"
            .write(toFile: toml, atomically: true, encoding: .utf8)
        #expect(SettingsLoader.check(toml).isEmpty)
        let fromTOML = try SettingsLoader.resolve(configFile: toml, environment: [:], flags: []).server
        #expect(fromTOML.maxTopicLevels == 5 && fromTOML.publishRate == 9 && fromTOML.maxConnectionsPerIP == 3)
        #expect(fromTOML.maxHTTPBodyBytesInFlight == 1_024)

        let yaml = directory.appendingPathComponent("broker.yaml").path
        try "limits:\n  max-pending-retained: 10\n  max-connections: 20\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let fromYAML = try SettingsLoader.resolve(configFile: yaml, environment: [:], flags: []).server
        #expect(fromYAML.maxPendingRetained == 10 && fromYAML.maxConnections == 20)
    }

    @Test(
        "out-of-range values are refused",
        arguments: [["--max-topic-levels", "0"], ["--limits-publish-rate", "-1"], ["--limits-max-pending-retained", "0"]])
    func outOfRange(flags: [String]) {
        #expect(throws: (any Error).self) {
            try SettingsLoader.resolve(configFile: nil, environment: [:], flags: SettingsLoader.fromFlags(flags))
        }
    }
}
