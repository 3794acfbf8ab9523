import ArgumentParser
import BrokerClient
import BrokerHTTPClient
import BrokerProtocol
import Foundation
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
            Each connection setting is taken from its flag, else its environment variable \
            (BROKER_URL, BROKER_TOKEN, BROKER_CA_FILE, BROKER_CERT_FILE, BROKER_KEY_FILE, \
            BROKER_API_KEY, BROKER_API_URL), else the context (--context NAME, else \
            BROKER_CONTEXT, else the one `context select` chose), else the default; the URL's \
            default is \(defaultURL). Contexts are saved with `broker-cli context save`.

            Exit codes:
              0  success (subscribe: interrupted with Ctrl-C / SIGTERM, --count reached, or
                 --wait passed without --count)
              1  the broker answered with an error or an HTTP error status (or
                 timed out, or dropped the connection)
              2  bad arguments (usage errors; ArgumentParser's usual 64 is mapped to 2)
              3  cannot connect to the broker
              4  subscribe --count N --wait S: S seconds passed before N messages arrived
            Errors are printed as one line on stderr, e.g.
              broker-cli: cannot connect to ws://127.0.0.1:8080/ws: connection refused

            Shell completion: broker-cli --generate-completion-script bash|zsh|fish
            More in docs/cli.md.
            """,
        version: BrokerVersion.number,
        subcommands: [Subscribe.self, Publish.self, Ping.self, Retained.self, Stats.self, Context.self])

    static let defaultURL = ConnectionSettings.defaultURL

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

enum CLILimits {
    /// The longest --timeout, --wait and --interval (a year): larger values would overflow the
    /// conversion to a Duration in milliseconds.
    static let maxSeconds: Double = 366 * 24 * 3600
}

/// The exit codes documented in `broker-cli --help`.
enum CLIExit: Int32 {
    case ok = 0
    case brokerError = 1
    case badArguments = 2
    case cannotConnect = 3
    /// `subscribe --count N --wait S`: S seconds passed before N messages arrived.
    case timedOutBeforeCount = 4
}

/// Options every subcommand that talks to a broker takes.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "Broker WebSocket URL (default: $BROKER_URL, else the context's, else \(ConnectionSettings.defaultURL)).")
    var url: String?

    @Option(
        help: ArgumentHelp(
            "Use this saved context (default: $BROKER_CONTEXT, else the one `context select` chose).",
            valueName: "name"))
    var context: String?

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

    @Option(
        help: ArgumentHelp(
            "PEM client certificate to present on wss:// (mutual TLS), with --key (default: $BROKER_CERT_FILE).",
            valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("PEM private key of --cert (default: $BROKER_KEY_FILE).", valueName: "file"))
    var key: String?

    @Flag(help: "Do not verify the broker's certificate on wss:// (testing only: anyone in the path can read the traffic).")
    var insecure = false

    /// What was given on the command line, as a context to lay over the environment and the saved one.
    var flags: CLIContext {
        CLIContext(url: url, token: token, caFile: caFile, certFile: cert, keyFile: key, insecure: insecure ? true : nil)
    }

    /// The settings after precedence (flag, environment, context, default); exits with 2 when a
    /// named context cannot be read.
    func settings(api: APIOptions? = nil) -> ConnectionSettings {
        var flags = self.flags
        flags.apiKey = api?.apiKey
        flags.apiURL = api?.apiURL
        do {
            return try ConnectionSettings.resolve(
                flags: flags, contextFlag: context, environment: Env.all, store: ContextStore(environment: Env.all))
        } catch {
            fail(.badArguments, error.description)
        }
    }

    func validate() throws {
        let settings: ConnectionSettings
        do {
            settings = try ConnectionSettings.resolve(
                flags: self.flags, contextFlag: context, environment: Env.all, store: ContextStore(environment: Env.all))
        } catch {
            throw ValidationError(error.description)
        }
        let url = settings.url
        guard url.hasPrefix("ws://") || url.hasPrefix("wss://") else {
            throw ValidationError("the URL must start with ws:// or wss://: \(url)")
        }
        guard timeout > 0, timeout <= CLILimits.maxSeconds else {
            throw ValidationError("--timeout must be positive and at most \(Int(CLILimits.maxSeconds))")
        }
        if (settings.certFile == nil) != (settings.keyFile == nil) {
            throw ValidationError("--cert and --key go together")
        }
        for file in [settings.caFile, settings.certFile, settings.keyFile].compactMap({ $0 })
        where !FileManager.default.isReadableFile(atPath: file) {
            throw ValidationError("cannot read \(file)")
        }
    }

    func clientConfiguration(_ settings: ConnectionSettings) -> BrokerClient.Configuration {
        var configuration = BrokerClient.Configuration()
        configuration.compression = !noCompression
        configuration.requestTimeout = .milliseconds(Int64(timeout * 1000))
        configuration.token = settings.token
        configuration.trustedCertificatesFile = settings.caFile
        configuration.clientCertificateFile = settings.certFile
        configuration.clientPrivateKeyFile = settings.keyFile
        configuration.verifiesBrokerCertificate = !settings.insecure
        return configuration
    }

    func makeClient(_ settings: ConnectionSettings, onEvent: (@Sendable (BrokerClient.Event) -> Void)? = nil) -> BrokerClient {
        if settings.insecure {
            writeStderr("broker-cli: warning: --insecure: the broker's certificate is not verified\n")
        }
        var configuration = clientConfiguration(settings)
        configuration.onEvent = onEvent
        var logger = Logger(label: "broker-cli")
        logger.logLevel = .critical
        return BrokerClient(url: settings.url, configuration: configuration, logger: logger)
    }
}

/// The HTTP API's options (`retained`, `stats`).
struct APIOptions: ParsableArguments {
    @Option(
        name: .customLong("api-key"),
        help: ArgumentHelp("The broker's API key (default: $BROKER_API_KEY, else the context's, else the token).", valueName: "key"))
    var apiKey: String?

    @Option(
        name: .customLong("api-url"),
        help: ArgumentHelp(
            "Base URL of the HTTP API, e.g. an admin listener's http://127.0.0.1:9090 (default: $BROKER_API_URL, else derived from the WebSocket URL).",
            valueName: "url"))
    var apiURL: String?

    /// GETs `pathAndQuery` from the API with the credentials of `settings`; exits on a transport
    /// failure (3) or a non-2xx answer (1).
    static func get(_ pathAndQuery: String, settings: ConnectionSettings, connection: ConnectionOptions) async -> APIRequest.Response {
        if settings.insecure {
            writeStderr("broker-cli: warning: --insecure: the broker's certificate is not verified\n")
        }
        var headers: [(String, String)] = []
        if let credential = settings.apiKey ?? settings.token { headers.append(("Authorization", "Bearer \(credential)")) }
        let url = settings.httpBaseURL + pathAndQuery
        let request = APIRequest(
            url: url, headers: headers, tls: connection.clientConfiguration(settings).tlsConfiguration,
            timeout: .milliseconds(Int64(connection.timeout * 1000)))
        let response: APIRequest.Response
        do {
            response = try await request.run()
        } catch {
            switch error {
            case .badURL: fail(.badArguments, error.description)
            case .cannotConnect: fail(.cannotConnect, error.description)
            case .failed, .timedOut: fail(.brokerError, error.description)
            }
        }
        guard (200..<300).contains(response.status) else {
            let reason = response.text.trimmingCharacters(in: .whitespacesAndNewlines)
            fail(.brokerError, "GET \(url): HTTP \(response.status)\(reason.isEmpty ? "" : ": " + reason)")
        }
        return response
    }
}

enum Env {
    /// The process environment (empty values included; `ConnectionSettings` ignores them).
    static var all: [String: String] { ProcessInfo.processInfo.environment }
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

/// Writes bytes to stdout at once.
func emit(bytes: [UInt8]) {
    writeAll(fd: 1, bytes)
}

/// Writes text to stderr at once.
func writeStderr(_ text: String) {
    writeAll(fd: 2, text)
}

private func writeAll(fd: Int32, _ text: String) {
    writeAll(fd: fd, Array(text.utf8))
}

private func writeAll(fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBufferPointer { bytes in
        guard bytes.count > 0 else { return }
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
