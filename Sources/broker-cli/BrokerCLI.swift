import ArgumentParser
import BrokerClient
import Logging
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `broker-cli`: publish to and subscribe from the broker on the command line.
@main
struct BrokerCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker-cli",
        abstract: "Publish to and subscribe from the broker.",
        discussion: """
            The broker URL is --url, else the BROKER_URL environment variable, else \(defaultURL).

            Exit codes:
              0  success (subscribe: interrupted with Ctrl-C / SIGTERM)
              1  the broker answered with an error (or timed out, or dropped the connection)
              2  bad arguments (usage errors; ArgumentParser's usual 64 is mapped to 2)
              3  cannot connect to the broker
            Errors are printed as one line on stderr, e.g.
              broker-cli: cannot connect to ws://127.0.0.1:8080/ws: connection refused
            """,
        subcommands: [Subscribe.self, Publish.self, Ping.self])

    static let defaultURL = "ws://127.0.0.1:8080/ws"

    /// Like ArgumentParser's `main()`, but usage errors exit with 2 instead of 64.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            if exitCode(for: error) == .validationFailure {
                writeStderr(fullMessage(for: error) + "\n")
                terminate(.badArguments)
            }
            exit(withError: error)
        }
    }
}

/// The exit codes documented in `broker-cli --help`.
enum CLIExit: Int32 {
    case ok = 0
    case brokerError = 1
    case badArguments = 2
    case cannotConnect = 3
}

/// Options every subcommand takes.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Broker WebSocket URL (default: $BROKER_URL, else \(BrokerCLI.defaultURL)).")
    var url: String?

    @Flag(name: .customLong("no-compression"), help: "Do not offer permessage-deflate.")
    var noCompression = false

    @Option(help: "Seconds to wait for a connection or a reply.")
    var timeout: Double = 10

    @Option(help: "Bearer token for a broker that requires one (default: $BROKER_TOKEN).")
    var token: String?

    @Option(
        name: .customLong("ca-file"),
        help: ArgumentHelp(
            "PEM certificates to trust for wss:// instead of the system's, e.g. the broker's self-signed certificate (default: $BROKER_CA_FILE).",
            valueName: "file"))
    var caFile: String?

    var resolvedURL: String {
        url ?? Env.get("BROKER_URL") ?? BrokerCLI.defaultURL
    }

    func validate() throws {
        let url = resolvedURL
        guard url.hasPrefix("ws://") || url.hasPrefix("wss://") else {
            throw ValidationError("the URL must start with ws:// or wss://: \(url)")
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func makeClient(onEvent: (@Sendable (BrokerClient.Event) -> Void)? = nil) -> BrokerClient {
        var configuration = BrokerClient.Configuration()
        configuration.compression = !noCompression
        configuration.requestTimeout = .milliseconds(Int64(timeout * 1000))
        configuration.onEvent = onEvent
        configuration.token = token ?? Env.get("BROKER_TOKEN")
        configuration.trustedCertificatesFile = caFile ?? Env.get("BROKER_CA_FILE")
        var logger = Logger(label: "broker-cli")
        logger.logLevel = .critical
        return BrokerClient(url: resolvedURL, configuration: configuration, logger: logger)
    }
}

enum Env {
    static func get(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let string = String(cString: value)
        return string.isEmpty ? nil : string
    }
}

/// Exits the process with `code`.
func terminate(_ code: CLIExit) -> Never {
    exit(code.rawValue)
}

/// Prints `broker-cli: <message>` on stderr and exits with `code`.
func fail(_ code: CLIExit, _ message: String) -> Never {
    writeStderr("broker-cli: \(message)\n")
    exit(code.rawValue)
}

/// Maps a client error to its exit code and one-line message, and exits.
func fail(_ error: any Error, doing what: String) -> Never {
    switch error {
    case BrokerClientError.cannotConnect:
        fail(.cannotConnect, "\(error)")
    case BrokerClientError.server:
        fail(.brokerError, "\(what): \(error)")
    case BrokerClientError.invalidTopic, BrokerClientError.invalidJSON:
        fail(.badArguments, "\(error)")
    default:
        fail(.brokerError, "\(what): \(error)")
    }
}

/// Writes a line to stdout at once (no buffering, so each line is visible when printed).
func emit(_ line: String) {
    writeAll(fd: 1, line + "\n")
}

/// Writes text to stderr at once.
func writeStderr(_ text: String) {
    writeAll(fd: 2, text)
}

private func writeAll(fd: Int32, _ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
