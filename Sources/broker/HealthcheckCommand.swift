import ArgumentParser
import BrokerHTTPClient
import BrokerServer
import BrokerSettings
import Foundation
import NIOSSL

/// `broker healthcheck`: GET /healthz of the broker that the same settings describe, for a
/// container's HEALTHCHECK (no curl in the image). Exit 0 on 200, 1 otherwise.
struct Healthcheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that the broker configured here answers GET /healthz (exit 0) or not (exit 1).",
        discussion: """
            Reads the same settings as `broker serve` (BROKER_* variables, --config or \
            BROKER_CONFIG, setting flags) and asks its listener, on loopback when it listens on \
            every interface. With TLS it speaks https and skips certificate verification: it \
            checks the broker on this machine, not its certificate. For a container's \
            HEALTHCHECK: `HEALTHCHECK CMD ["broker", "healthcheck"]`.
            """)

    @Option(help: ArgumentHelp("Configuration file, YAML or TOML; also BROKER_CONFIG.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("Seconds to wait for the answer.", valueName: "seconds"))
    var timeout: Double = 3

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp("Setting flags of `broker serve`, e.g. --port 9000.", valueName: "settings"))
    var settings: [String] = []

    func validate() throws {
        guard timeout > 0, timeout <= 3_600 else { throw ValidationError("--timeout must be from 0 to 3600 seconds") }
    }

    func run() async throws {
        let resolved: BrokerSettings
        do {
            resolved = try SettingsLoader.resolve(
                configFile: config, environment: ProcessInfo.processInfo.environment,
                flags: SettingsLoader.fromFlags(settings))
        } catch let error as SettingError {
            throw ValidationError("\(error)")
        }
        let url = Self.healthURL(resolved.resolvedServer)
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        let request = APIRequest(url: url, tls: tls, timeout: .milliseconds(Int64(timeout * 1000)))
        do {
            let response = try await request.run()
            guard response.status == 200 else {
                FileHandle.standardError.write(Data("broker: \(url): HTTP \(response.status)\n".utf8))
                throw ExitCode(1)
            }
            print(response.text.trimmingCharacters(in: .whitespacesAndNewlines))
        } catch let failure as APIRequest.Failure {
            FileHandle.standardError.write(Data("broker: \(failure)\n".utf8))
            throw ExitCode(1)
        }
    }

    /// `http(s)://HOST:PORT/healthz`, HOST on loopback when the broker listens on every interface.
    static func healthURL(_ configuration: BrokerConfiguration) -> String {
        var host = configuration.host
        if host == "0.0.0.0" || host.isEmpty { host = "127.0.0.1" }
        if host == "::" || host == "[::]" { host = "::1" }
        if host.contains(":"), !host.hasPrefix("[") { host = "[\(host)]" }
        return "\(configuration.tls == nil ? "http" : "https")://\(host):\(configuration.port)/healthz"
    }
}
