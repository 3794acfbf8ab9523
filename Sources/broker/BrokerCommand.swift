import ArgumentParser

/// `broker`: the WebSocket pub/sub server. `broker` alone is `broker serve`.
@main
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "A WebSocket pub/sub broker with retained messages journaled to SQLite.",
        discussion: """
            Clients connect over WebSocket to ws://HOST:PORT/ws and speak the JSON protocol \
            described in docs/protocol.md.

            Exit codes: 0 clean shutdown; 1 unexpected error; 64 bad arguments; \
            \(ExitCodes.dataDirectoryLocked) data directory in use by another broker; \
            \(ExitCodes.dataDirectoryUnusable) data directory or journal unusable; \
            \(ExitCodes.cannotListen) cannot listen on the address.
            """,
        subcommands: [Serve.self, Retained.self],
        defaultSubcommand: Serve.self
    )
}

/// Process exit codes, documented in `broker --help` and docs/operations.md.
enum ExitCodes {
    static let dataDirectoryLocked: Int32 = 3
    static let dataDirectoryUnusable: Int32 = 4
    static let cannotListen: Int32 = 5
}
