import ArgumentParser
import BrokerProtocol
import BrokerSettings

/// `broker`: the WebSocket pub/sub server. `broker` alone is `broker serve`.
@main
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "A WebSocket pub/sub broker with retained messages journaled to SQLite.",
        discussion: """
            Clients connect over WebSocket to ws://HOST:PORT/ws (wss:// with TLS) and speak the \
            JSON protocol described in docs/protocol.md; the HTTP API on the same listener is \
            described in docs/http-api.md. `broker` alone runs `broker serve`; every setting of \
            `broker serve` (below) is also a BROKER_* environment variable and a configuration \
            file key (docs/configuration.md).

            SETTINGS (broker serve):
              --config <file>
                    Configuration file, YAML or TOML (env BROKER_CONFIG).
            \(SettingsReference.helpText())

            \(exitCodesHelp)
            """,
        version: BrokerVersion.number,
        subcommands: [Serve.self, Config.self, Retained.self, Token.self, Healthcheck.self],
        defaultSubcommand: Serve.self
    )
}

/// Process exit codes, documented in `broker --help` and docs/operations.md.
enum ExitCodes {
    static let dataDirectoryLocked: Int32 = 3
    static let dataDirectoryUnusable: Int32 = 4
    static let cannotListen: Int32 = 5
    static let tlsUnusable: Int32 = 6
    static let badConfiguration: Int32 = 78
}

let exitCodesHelp = """
    EXIT CODES:
      0   clean shutdown (SIGTERM/SIGINT: clients get 1001, journal flushed)
      1   unexpected error
      3   data directory in use by another broker
      4   data directory or journal unusable
      5   cannot listen on the address
      6   TLS certificate or key unusable
      64  bad arguments or settings (flag, environment variable or config file)
      78  configuration error: `broker config check` found problems, an open broker (no
          credentials) on a non-loopback host without auth.allow-anonymous, or an unusable
          auth.jwt-public-key
    """
