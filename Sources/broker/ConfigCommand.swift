import ArgumentParser
import BrokerSettings
import Foundation

struct Config: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check configuration files and print the configuration reference.",
        subcommands: [Check.self, Show.self, Reference.self])

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a configuration file (YAML or TOML).",
            discussion: """
                Prints 'FILE: ok' and exits 0, or prints every problem as FILE:LINE: KEY: what is \
                wrong and exits \(ExitCodes.badConfiguration). Unknown keys are errors.
                """)

        @Argument(help: ArgumentHelp("The configuration file.", valueName: "file"))
        var file: String

        func run() throws {
            let problems = SettingsLoader.check(file)
            guard problems.isEmpty else {
                for problem in problems {
                    FileHandle.standardError.write(Data("\(problem)\n".utf8))
                }
                throw ExitCode(ExitCodes.badConfiguration)
            }
            print("\(file): ok")
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the settings the broker would run with, as YAML (secrets redacted).",
            discussion: """
                Takes the same --config and setting flags as `broker serve`, and reads the same \
                BROKER_* variables. The API key and client tokens are printed as <redacted>.
                """)

        @Option(help: ArgumentHelp("Configuration file, YAML or TOML; also BROKER_CONFIG.", valueName: "file"))
        var config: String?

        @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Setting flags, as for `broker serve`.", valueName: "settings"))
        var settings: [String] = []

        func run() throws {
            do {
                let resolved = try SettingsLoader.resolve(
                    configFile: config, environment: ProcessInfo.processInfo.environment,
                    flags: SettingsLoader.fromFlags(settings))
                print(SettingsReference.yaml(resolved), terminator: "")
            } catch let error as SettingError {
                throw ValidationError("\(error)")
            }
        }
    }

    struct Reference: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the configuration reference (docs/configuration.md) as Markdown.")

        func run() {
            print(SettingsReference.markdown(), terminator: "")
        }
    }
}
