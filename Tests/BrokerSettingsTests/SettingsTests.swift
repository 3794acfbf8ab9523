import BrokerJournal
import Foundation
import Logging
import Testing

import BrokerServer

@testable import BrokerSettings

/// The settings table and its sources: precedence, files, `config check`, the generated docs.
@Suite struct SettingsTests {
    func write(_ text: String, _ name: String) throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    @Test func defaultsMatchTheEngine() throws {
        let settings = try SettingsLoader.resolve(configFile: nil, environment: [:], flags: [])
        #expect(settings.server.port == 8080)
        #expect(settings.server.host == "127.0.0.1")
        #expect(settings.resolvedServer.maxFrameBytes == settings.server.maxMessageBytes)
        #expect(settings.dataDirectory == "./data")
        #expect(settings.journal.durability == .normal)
        #expect(settings.logLevel == "info" && settings.logFormat == "text")
        #expect(SettingKey.named("port")?.flag == "--port")
        #expect(SettingKey.named("retain.max-age")?.flag == "--retain-max-age")
        #expect(SettingKey.named("retain.max-age")?.environmentVariable == "BROKER_RETAIN_MAX_AGE")
        #expect(SettingKey.named("retain.max-age")?.defaultValue == "604800")
        // Names are unique, and so are flags and variables.
        #expect(Set(SettingKey.all.map(\.name)).count == SettingKey.all.count)
        #expect(Set(SettingKey.all.map(\.flag)).count == SettingKey.all.count)
        #expect(Set(SettingKey.all.map(\.environmentVariable)).count == SettingKey.all.count)
    }

    @Test func precedenceIsFlagsThenEnvironmentThenFileThenDefaults() throws {
        let file = try write(
            """
            port: 1111
            host: 10.0.0.1
            data-dir: /from/file
            retain:
              max-messages: 7
            log:
              level: debug
            """, "broker.yaml")
        let environment = ["BROKER_PORT": "2222", "BROKER_DATA_DIR": "/from/env", "UNRELATED": "x", "BROKER_NOT_A_SETTING": "1"]
        let flags = try SettingsLoader.fromFlags(["--port", "3333"])
        let settings = try SettingsLoader.resolve(configFile: file, environment: environment, flags: flags)
        #expect(settings.server.port == 3333)  // flag
        #expect(settings.dataDirectory == "/from/env")  // environment over file
        #expect(settings.server.host == "10.0.0.1")  // file
        #expect(settings.journal.retention.maxMessagesPerTopic == 7)  // file, in a section
        #expect(settings.logLevel == "debug")
        #expect(settings.server.maxTopicBytes == 256)  // default

        // BROKER_CONFIG names the file when --config does not.
        let viaVariable = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_CONFIG": file], flags: [])
        #expect(viaVariable.server.port == 1111)
        // The environment alone is enough.
        let fromEnvironment = try SettingsLoader.resolve(
            configFile: nil,
            environment: ["BROKER_PORT": "9", "BROKER_LOG_FORMAT": "json", "BROKER_AUTH_CLIENT_TOKENS": "a b",
                          "BROKER_RETAIN_OVERRIDE": "logs/#=10,60 tmp/#=1"],
            flags: [])
        #expect(fromEnvironment.server.port == 9)
        #expect(fromEnvironment.logFormat == "json")
        #expect(fromEnvironment.server.clientTokens == ["a", "b"])
        #expect(fromEnvironment.journal.retention.overrides.map(\.filter) == ["logs/#", "tmp/#"])
    }

    @Test func flags() throws {
        let flags = try SettingsLoader.fromFlags([
            "--port=0", "--metrics-enabled", "--retain-override", "a/#=1", "--retain-override", "b/#=2,30",
            "--max-message-bytes", "64KiB", "--ping-interval", "0.5", "--log-format", "json",
        ])
        var settings = BrokerSettings()
        try SettingsLoader.apply(flags, to: &settings)
        #expect(settings.server.port == 0)
        #expect(settings.metricsEnabled)
        #expect(settings.journal.retention.overrides.count == 2)
        #expect(settings.journal.retention.overrides[1].maxAge == .seconds(30))
        #expect(settings.server.maxMessageBytes == 65_536)
        #expect(settings.server.pingInterval == .milliseconds(500))

        #expect(throws: SettingError.self) { try SettingsLoader.fromFlags(["--no-such-thing", "1"]) }
        #expect(throws: SettingError.self) { try SettingsLoader.fromFlags(["--port"]) }
        do {
            var bad = BrokerSettings()
            try SettingsLoader.apply(try SettingsLoader.fromFlags(["--port", "70000"]), to: &bad)
            Issue.record("port 70000 accepted")
        } catch {
            #expect(error.key == "port")
            #expect(error.source == "flag --port")
            #expect(error.description.contains("from 0 to 65535"))
        }
        do {
            _ = try SettingsLoader.resolve(configFile: nil, environment: ["BROKER_DURABILITY": "sometimes"], flags: [])
            Issue.record("bad durability accepted")
        } catch let error as SettingError {
            #expect(error.key == "durability")
            #expect(error.source == "environment variable BROKER_DURABILITY")
        }
    }

    /// Found by Fuzz/ (settings): a duration past Int64 nanoseconds (`--ping-interval 1e10`,
    /// `retain.max-age = 1e300`, an override age of `inf`) trapped when converted instead of
    /// being refused, so the broker crashed at startup and `config check` crashed on the file.
    @Test func durationsOutOfRangeAreRefusedNotTrapped() throws {
        for (flag, value) in [
            ("--ping-interval", "1e10"), ("--retain-max-age", "1e300"), ("--metrics-interval", "9223372037"),
            ("--http-idle-timeout", "1e-12"), ("--retain-override", "a/#=1,inf"), ("--retain-override", "a/#=1,1e300"),
        ] {
            var settings = BrokerSettings()
            #expect(throws: SettingError.self, "\(flag) \(value)") {
                try SettingsLoader.apply(try SettingsLoader.fromFlags([flag, value]), to: &settings)
            }
        }
        let file = try write("retain:\n  max-age: 1e300\n  override: [\"a/#=1,inf\"]\nping-interval: 1e10\n", "huge.yaml")
        #expect(SettingsLoader.check(file).map(\.key).sorted() == ["ping-interval", "retain.max-age", "retain.override"])
        // The largest accepted value still converts and shows.
        var settings = BrokerSettings()
        try SettingsLoader.apply(try SettingsLoader.fromFlags(["--pong-timeout", "1000000000"]), to: &settings)
        #expect(settings.server.pongTimeout == .seconds(1_000_000_000))
        #expect(SettingKey.named("pong-timeout")?.read(settings) == "1000000000")
    }

    @Test func checkNamesUnknownKeysAndBadValuesWithTheirLines() throws {
        let yaml = try write(
            """
            # a comment
            port: 8080
            prot: 8081
            retain:
              max-messages: -1
              max-agee: 5
            durability: sometimes
            log:
              level: loud
            tls:
              certificate: /x.pem
            """, "bad.yaml")
        let problems = SettingsLoader.check(yaml)
        let summary = problems.map { "\($0.source ?? ""): \($0.key)" }
        #expect(summary == [
            "\(yaml):3: prot", "\(yaml):5: retain.max-messages", "\(yaml):6: retain.max-agee",
            "\(yaml):7: durability", "\(yaml):9: log.level",
        ])
        #expect(problems[0].message.contains("unknown key"))
        #expect(problems[2].message.contains("unknown key"))
        #expect(problems[1].message.contains("at least 1"))

        let good = try write("port: 1\ntls:\n  certificate: a.pem\n  key: a.key\n", "good.yml")
        #expect(SettingsLoader.check(good).isEmpty)
        let half = try write("tls:\n  certificate: a.pem\n", "half.yaml")
        #expect(SettingsLoader.check(half).map(\.key) == ["tls.key"])
        let syntax = try write("port: [1,\n", "syntax.yaml")
        #expect(SettingsLoader.check(syntax).first?.message.contains("not valid YAML") == true)
        let list = try write("port:\n  - 1\n", "list.yaml")
        #expect(SettingsLoader.check(list).first?.message.contains("single value") == true)
        #expect(SettingsLoader.check("/nonexistent/broker.yaml").first?.message == "cannot read the file")
    }

    @Test func toml() throws {
        let file = try write(
            """
            # broker
            port = 9000
            host = "0.0.0.0"   # every interface
            durability = 'full'

            [retain]
            max-messages = 5
            override = ["logs/#=10,60", "a/#=1"]

            [log]
            format = "json"
            """, "broker.toml")
        #expect(SettingsLoader.check(file).isEmpty)
        let settings = try SettingsLoader.resolve(configFile: file, environment: [:], flags: [])
        #expect(settings.server.port == 9000)
        #expect(settings.server.host == "0.0.0.0")
        #expect(settings.journal.durability == .full)
        #expect(settings.journal.retention.maxMessagesPerTopic == 5)
        #expect(settings.journal.retention.overrides.map(\.filter) == ["logs/#", "a/#"])
        #expect(settings.logFormat == "json")

        let bad = try write("port = 1\n[retain]\nmax-mesages = 3\n[nope]\nx = 1\n[log]\nlevel = 3\n", "bad.toml")
        let problems = SettingsLoader.check(bad)
        #expect(problems.map { "\($0.source ?? ""): \($0.key)" } == [
            "\(bad):3: retain.max-mesages", "\(bad):4: nope", "\(bad):5: nope.x", "\(bad):7: log.level",
        ])
    }

    /// Valid TOML that the hand-written reader before TOMLKit refused: an array over several
    /// lines (with comments and a trailing comma), an inline table, a dotted key at the root, a
    /// multi-line string, a hexadecimal integer and a \u escape.
    @Test func tomlBeyondOneLineValues() throws {
        let file = try write(
            #"""
            host = "0.0.0.0"
            compression.level = 3                                  # a dotted key at the root
            http = { max-batch-messages = 10, idle-timeout = 2.5 } # an inline table
            echo-path = """
            /echo"""
            max-message-bytes = 0x8_0000
            ws-path = "/w\u0073"

            [retain]
            max-messages = 1_500
            override = [
                "logs/#=10,60",   # logs: ten for a minute
                'a/#=1',
                "b/#=2,30",       # a trailing comma is allowed
            ]

            [auth]
            client-tokens = [ "alpha",
                              "beta" ]

            [log]
            format = "json"
            """#, "broker.toml")
        #expect(SettingsLoader.check(file).isEmpty, "\(SettingsLoader.check(file))")
        let settings = try SettingsLoader.resolve(configFile: file, environment: [:], flags: [])
        #expect(settings.server.host == "0.0.0.0")
        #expect(settings.server.compressionLevel == 3)
        #expect(settings.server.maxBatchMessages == 10)
        #expect(settings.server.httpIdleTimeout == .milliseconds(2_500))
        #expect(settings.server.echoPath == "/echo")
        #expect(settings.server.maxMessageBytes == 524_288)
        #expect(settings.server.webSocketPath == "/ws")
        #expect(settings.journal.retention.maxMessagesPerTopic == 1_500)
        #expect(settings.journal.retention.overrides.map(\.filter) == ["logs/#", "a/#", "b/#"])
        #expect(settings.journal.retention.overrides[2].maxAge == .seconds(30))
        #expect(settings.server.clientTokens == ["alpha", "beta"])
        #expect(settings.logFormat == "json")
    }

    /// Problems in a TOML file name the line of their key, also after values that span lines
    /// (TOMLKit keeps no positions; `TOMLKeyLines` finds them).
    /// toml++ asserts and aborts the process on these (found by Fuzz/ FuzzSettings): each must be
    /// an error with its line, and the process must live on.
    @Test(arguments: ["port = 1\n[\nn", "[\n", "[ \n", "[.a]\n", "[[\n", "[ # x\n", "port = 1\n[", "[[ .a]]\n"])
    func tomlHeadersWithoutAKeyAreRefused(_ text: String) throws {
        let file = try write(text, "nameless.toml")
        let problem = try #require(SettingsLoader.check(file).first)
        #expect(problem.message.hasPrefix("not valid TOML: "))
        #expect(problem.source?.hasPrefix("\(file):") == true)
        // Valid headers of every form still load.
        let valid = try write("[auth]\n[ \"retain\" ]\n['http']\n", "headers.toml")
        #expect(SettingsLoader.check(valid).isEmpty)
    }

    @Test func tomlProblemsNameTheirLines() throws {
        let file = try write(
            #"""
            port = 1
            [auth]
            client-tokens = [
              "x = 1",
              """
            not-a-key = 2
            """,
            ]
            tokens = 3
            [retain]
            max-messages = -4
            max-age = 1979-05-27
            [http]
            max-batch-messages = [1, 2]
            """#, "lines.toml")
        let problems = SettingsLoader.check(file)
        #expect(problems.map { "\($0.source ?? ""): \($0.key)" } == [
            "\(file):9: auth.tokens", "\(file):11: retain.max-messages", "\(file):12: retain.max-age",
            "\(file):14: http.max-batch-messages",
        ])
        #expect(problems[0].message.contains("unknown key"))
        #expect(problems[1].message.contains("at least 1"))
        #expect(problems[2].message == "expected a value, got a date")
        #expect(problems[3].message.contains("single value"))

        // A file that is not TOML: the line (and column) TOMLKit reports, and what is wrong.
        let unterminated = try write("port = 1\noverride = [\"a/#=1\",\nhost = \"x\"\n", "unterminated.toml")
        let syntax = try #require(SettingsLoader.check(unterminated).first)
        #expect(syntax.message.hasPrefix("not valid TOML: "))
        #expect(syntax.message.contains("column"))
        #expect(syntax.source?.hasPrefix("\(unterminated):") == true)
        #expect(syntax.source != unterminated)
        let duplicate = try write("port = 1\nhost = \"a\"\nport = 2\n", "duplicate.toml")
        let redefined = try #require(SettingsLoader.check(duplicate).first)
        #expect(redefined.source == "\(duplicate):3")
        #expect(redefined.message.hasPrefix("not valid TOML: "))
        do {
            _ = try SettingsLoader.resolve(configFile: duplicate, environment: [:], flags: [])
            Issue.record("a TOML file with a key defined twice was accepted")
        } catch let error as SettingError {
            #expect(error.description.hasPrefix("\(duplicate):3: config: not valid TOML: "))
        }
    }

    /// A list in an environment variable: commas separate elements (as docs/configuration.md
    /// says), whitespace too; a `retain.override` element keeps the comma before its age.
    @Test func environmentListsAreCommaSeparated() throws {
        let resolve = { (variables: [String: String]) in
            try SettingsLoader.resolve(configFile: nil, environment: variables, flags: [])
        }
        #expect(try resolve(["BROKER_AUTH_CLIENT_TOKENS": "alpha,beta"]).server.clientTokens == ["alpha", "beta"])
        #expect(try resolve(["BROKER_AUTH_CLIENT_TOKENS": " alpha, beta ,gamma "]).server.clientTokens == ["alpha", "beta", "gamma"])
        #expect(try resolve(["BROKER_AUTH_CLIENT_TOKENS": "alpha beta"]).server.clientTokens == ["alpha", "beta"])
        #expect(try resolve(["BROKER_AUTH_CLIENT_TOKENS": "alpha,,beta,"]).server.clientTokens == ["alpha", "beta"])
        #expect(try resolve(["BROKER_AUTH_CLIENT_TOKENS": ""]).server.clientTokens == [])

        let overrides = try resolve(["BROKER_RETAIN_OVERRIDE": "logs/#=100,3600,tmp/#=1,metrics/#=5, 60"])
            .journal.retention.overrides
        #expect(overrides.map(\.filter) == ["logs/#", "tmp/#", "metrics/#"])
        #expect(overrides.map(\.maxMessagesPerTopic) == [100, 1, 5])
        #expect(overrides.map(\.maxAge) == [.seconds(3600), nil, .seconds(60)])
        #expect(try resolve(["BROKER_RETAIN_OVERRIDE": "logs/#=100,3600 tmp/#=1"]).journal.retention.overrides.count == 2)
        // An age with no override before it is an error, not a silent drop.
        #expect(throws: SettingError.self) { try resolve(["BROKER_RETAIN_OVERRIDE": "3600,logs/#=1"]) }

        // The same rule for a single string where a file expects a list.
        let file = try write("auth:\n  client-tokens: alpha,beta\n", "tokens.yaml")
        #expect(try SettingsLoader.resolve(configFile: file, environment: [:], flags: []).server.clientTokens == ["alpha", "beta"])
        // And what the generated reference says.
        #expect(SettingsReference.markdown().contains("`BROKER_AUTH_CLIENT_TOKENS=alpha,beta`"))
    }

    /// `broker config show` prints no credential: the API key and each client token show as
    /// `<redacted>`; unset ones as empty, so the output still tells what is set.
    @Test func showRedactsSecrets() throws {
        let settings = try SettingsLoader.resolve(
            configFile: nil,
            environment: ["BROKER_AUTH_API_KEY": "s3cret-api-key", "BROKER_AUTH_CLIENT_TOKENS": "tok-one,tok-two"],
            flags: SettingsLoader.fromFlags(["--port", "9"]))
        let yaml = SettingsReference.yaml(settings)
        #expect(!yaml.contains("s3cret"))
        #expect(!yaml.contains("tok-"))
        #expect(yaml.contains("auth:\n  api-key: \"<redacted>\"\n  client-tokens: [\"<redacted>\", \"<redacted>\"]\n"))
        #expect(yaml.contains("port: \"9\"\n"))  // everything else as it is

        let unset = SettingsReference.yaml(BrokerSettings())
        #expect(unset.contains("auth:\n  api-key: \"\"\n  client-tokens: []\n"))

        // Every setting that names a credential is marked secret, and only those.
        // (`cluster.postgres-url` carries the database's password.)
        let secretLike = ["api-key", "token", "secret", "password", "passphrase", "postgres-url"]
        for key in SettingKey.all {
            #expect(key.isSecret == secretLike.contains { key.name.contains($0) }, "\(key.name)")
        }
    }

    /// Cluster mode's URL: a postgres:// URL or nothing, and never shown (it holds a password).
    @Test func clusterPostgresURLIsCheckedAndRedacted() throws {
        let settings = try SettingsLoader.resolve(
            configFile: nil, environment: ["BROKER_CLUSTER_POSTGRES_URL": "postgres://b:pw-xyz@db/broker"],
            flags: SettingsLoader.fromFlags(["--cluster-node-name", "n1"]))
        #expect(settings.clusterPostgresURL == "postgres://b:pw-xyz@db/broker")
        #expect(settings.resolvedNodeName == "n1")
        #expect(!SettingsReference.yaml(settings).contains("pw-xyz"))
        #expect(BrokerSettings().clusterPostgresURL.isEmpty)
        #expect(throws: SettingError.self) {
            try SettingsLoader.resolve(
                configFile: nil, environment: ["BROKER_CLUSTER_POSTGRES_URL": "mysql://db"], flags: SettingsLoader.fromFlags([]))
        }
    }

    @Test func showPrintsTheEffectiveSettings() throws {
        var settings = BrokerSettings()
        try SettingsLoader.apply(try SettingsLoader.fromFlags(["--port", "9", "--retain-override", "a/#=1,5"]), to: &settings)
        let yaml = SettingsReference.yaml(settings)
        #expect(yaml.contains("port: \"9\"\n"))
        #expect(yaml.contains("retain:\n  max-messages: \"1000\"\n"))
        #expect(yaml.contains(#"  override: ["a/#=1,5"]"#))
        // What `show` prints reads back to the same settings.
        let file = try write(yaml, "shown.yaml")
        #expect(SettingsLoader.check(file).isEmpty)
        let reread = try SettingsLoader.resolve(configFile: file, environment: [:], flags: [])
        #expect(reread.server.port == 9)
        #expect(reread.journal.retention.overrides == settings.journal.retention.overrides)
    }

    @Test func theCommittedReferenceIsUpToDate() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let committed = try String(contentsOf: root.appendingPathComponent("docs/configuration.md"), encoding: .utf8)
        #expect(committed == SettingsReference.markdown(), "regenerate: swift run broker config reference > docs/configuration.md")
        // Every key is in it.
        for key in SettingKey.all { #expect(committed.contains("`\(key.name)`")) }
    }

    @Test func theReferenceExamplesAreValid() throws {
        let markdown = SettingsReference.markdown()
        for (fence, name) in [("```yaml\n", "example.yaml"), ("```toml\n", "example.toml")] {
            let start = try #require(markdown.range(of: fence))
            let end = try #require(markdown.range(of: "```", range: start.upperBound..<markdown.endIndex))
            let file = try write(String(markdown[start.upperBound..<end.lowerBound]), name)
            #expect(SettingsLoader.check(file).isEmpty, "\(name): \(SettingsLoader.check(file))")
            let settings = try SettingsLoader.resolve(configFile: file, environment: [:], flags: [])
            #expect(settings.journal.durability == .full)
            #expect(settings.server.maxBatchBytes == 4 << 20)
            #expect(settings.resolvedServer.tls?.privateKeyPath == "/etc/broker/key.pem")
        }
    }
}
