import BrokerServer
import BrokerSettings
import Foundation
import FuzzSupport

// Settings: configuration files as `broker config check` and `broker serve --config` read
// them (YAML through Yams, and the TOML reader), `BROKER_*` environment variables and
// command-line flags, each applied to `BrokerSettings` (every setting's value parser) and
// validated.
//
// Input: one byte choosing the source (0: YAML file, 1: TOML file, 2: flags, one per line,
// 3: environment, `NAME=VALUE` per line), then its text.
//
// Invariants: `check` and `resolve` agree (a file with no problems resolves, a file that
// resolves has no problems); a setting's reported source names the file.

private let directory: String = {
    let path = NSTemporaryDirectory() + "broker-fuzz-settings-\(getpid())"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSettings(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let source = input.byte() % 4
    let body = input.rest()
    let text = String(decoding: body, as: UTF8.self)
    switch source {
    case 0, 1:
        let path = directory + (source == 0 ? "/broker.yaml" : "/broker.toml")
        guard FileManager.default.createFile(atPath: path, contents: Data(body)) else {
            fuzzCheck(false, "cannot write \(path)")
            return 0
        }
        let problems = SettingsLoader.check(path)
        let resolved: Result<BrokerSettings, any Error> = Result {
            try SettingsLoader.resolve(configFile: path, environment: [:], flags: [])
        }
        switch resolved {
        case .success(let settings):
            fuzzCheck(problems.isEmpty, "resolves, yet check reports \(problems)")
            _ = settings.resolvedServer
        case .failure(let error):
            fuzzCheck(!problems.isEmpty, "check reports nothing, yet resolve fails: \(error)")
        }
        for problem in problems {
            fuzzCheck(problem.source?.hasPrefix(path) ?? true, "problem \(problem) does not name the file")
        }
    case 2:
        let arguments = text.split(separator: "\n").map(String.init)
        if let assignments = try? SettingsLoader.fromFlags(arguments) {
            var settings = BrokerSettings()
            if (try? SettingsLoader.apply(assignments, to: &settings)) != nil {
                _ = try? settings.validate()
            }
        }
    default:
        var environment: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            environment[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        var settings = BrokerSettings()
        if (try? SettingsLoader.apply(SettingsLoader.fromEnvironment(environment), to: &settings)) != nil {
            _ = try? settings.validate()
        }
    }
    return 0
}
