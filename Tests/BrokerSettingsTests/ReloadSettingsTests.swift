import Testing

import BrokerServer

@testable import BrokerSettings

/// SIGHUP's "diff and apply": which changed settings a reload takes, which need a restart, and
/// that the table's reload marks agree with what the engine really takes
/// (`BrokerConfiguration.reloading(from:)`).
@Suite struct ReloadSettingsTests {
    func settings(_ flags: [String]) throws -> BrokerSettings {
        try SettingsLoader.resolve(configFile: nil, environment: [:], flags: SettingsLoader.fromFlags(flags))
    }

    @Test func changedSettingsAreSplitIntoReloadedAndNeedingARestart() throws {
        let old = try settings(["--auth-client-tokens", "alpha", "--max-subscriptions", "10"])
        let new = try settings([
            "--auth-client-tokens", "beta", "--max-subscriptions", "20", "--replay-page-size", "64", "--log-level", "debug",
        ])
        let change = SettingsChange(from: old, to: new)
        #expect(change.reloaded == ["max-subscriptions", "auth.client-tokens", "log.level"])
        #expect(change.needRestart == ["replay-page-size"])
        #expect(SettingsChange(from: new, to: new).isEmpty)
        // Names only: nothing of a value.
        #expect(!(change.reloaded + change.needRestart).contains { $0.contains("alpha") || $0.contains("beta") })
    }

    @Test func newCertificateFilesAreAReloadButTurningTLSOnIsNot() throws {
        let plain = try settings([])
        let tls = try settings(["--tls-certificate", "/a/cert.pem", "--tls-key", "/a/key.pem"])
        let renewed = try settings(["--tls-certificate", "/b/cert.pem", "--tls-key", "/b/key.pem"])
        #expect(SettingsChange(from: plain, to: tls) == SettingsChange(needRestart: ["tls.certificate", "tls.key"]))
        #expect(SettingsChange(from: tls, to: plain) == SettingsChange(needRestart: ["tls.certificate", "tls.key"]))
        #expect(SettingsChange(from: tls, to: renewed) == SettingsChange(reloaded: ["tls.certificate", "tls.key"]))
        // And the engine takes the files only for a TLS listener.
        #expect(plain.resolvedServer.reloading(from: tls.resolvedServer).tls == nil)
        #expect(tls.resolvedServer.reloading(from: renewed.resolvedServer).tls == renewed.resolvedServer.tls)
    }

    /// For every setting: give it a value other than its default, reload a default broker with
    /// it, and see what the engine took. A setting marked reloadable must arrive; any other must
    /// stay as it was. (`log.level` is the executable's, and TLS is checked above.)
    @Test func theReloadMarksAgreeWithWhatTheEngineTakes() throws {
        let defaults = try settings([])
        var checked = 0
        for key in SettingKey.all where key.name != "log.level" && !key.name.hasPrefix("tls.") {
            guard let changed = try changedSetting(key, from: defaults) else {
                Issue.record("no sample value for \(key.name)")
                continue
            }
            var inForce = defaults
            inForce.server = defaults.resolvedServer.reloading(from: changed.resolvedServer)
            if key.isReloadable {
                #expect(key.read(inForce) == key.read(changed), "\(key.name) is marked (reload) but the engine kept it")
            } else {
                #expect(key.read(inForce) == key.read(defaults), "\(key.name) is not marked (reload) but the engine took it")
            }
            checked += 1
        }
        #expect(checked > 50)
        #expect(SettingKey.reloadableNames.allSatisfy { SettingKey.named($0) != nil })
    }

    /// Settings with `key` set to some value other than its default, or nil when none of the
    /// samples fits.
    func changedSetting(_ key: SettingKey, from defaults: BrokerSettings) throws -> BrokerSettings? {
        var samples: [String]
        switch key.kind {
        case .integer(let range), .bytes(let range):
            samples = [range.lowerBound + 1, range.lowerBound + 2, range.lowerBound].map(String.init)
        case .seconds, .secondsOrZero: samples = ["7.5", "8.5"]
        case .bool: samples = ["true", "false"]
        case .choice(let words): samples = words
        case .string, .list:
            samples = ["/sample", "postgres://u@h/d", "sample", "https://a.example", "10.0.0.1", "a/#=1"]
        }
        for sample in samples {
            guard let changed = try? settings([key.flag, sample]), key.read(changed) != key.read(defaults) else { continue }
            return changed
        }
        return nil
    }
}
