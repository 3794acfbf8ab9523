import ArgumentParser
import BrokerJournal
import BrokerServer
import Foundation
import Logging
import NIOCore
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the broker (the default command).")

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port = 8080

    @Option(help: "Directory for the SQLite journal of retained messages.")
    var dataDir = "./data"

    @Option(help: "Opt-in echo endpoint for conformance testing (e.g. /echo); off by default.")
    var echoPath: String?

    @Option(help: "Largest message a client may send, in bytes (announced in welcome).")
    var maxMessageBytes = 1 << 20

    @Option(help: "Largest single WebSocket frame a client may send, in bytes.")
    var maxFrameBytes: Int?

    @Option(help: "Longest topic name or filter, in bytes.")
    var maxTopicBytes = 256

    @Option(help: "Subscriptions one connection may hold.")
    var maxSubscriptions = 1_000

    @Option(help: "Bytes queued for one connection before it is closed as a slow consumer (1008).")
    var maxOutboundBytes = 1 << 20

    @Option(help: "Seconds of silence before the broker pings a connection.")
    var pingInterval = 30.0

    @Option(help: "Seconds a ping may stay unanswered before the connection is closed.")
    var pongTimeout = 10.0

    @Option(help: "Seconds a graceful shutdown waits for clients to close.")
    var shutdownGrace = 10.0

    @Option(help: "Event loop threads (default: one per core).")
    var threads: Int?

    @Option(help: "Journal durability: 'normal' survives a crash of the broker process (kill -9); 'full' fsyncs every commit and survives power loss.")
    var durability = "normal"

    @Option(help: "Retained messages kept per topic.")
    var retainMaxMessages = RetentionPolicy().maxMessagesPerTopic

    @Option(help: "Retained messages older than this many seconds are pruned (604800 s = 7 days).")
    var retainMaxAge = Double(RetentionPolicy().maxAge.components.seconds)

    @Option(help: "Journal-wide budget for retained payload bytes; the oldest go first.")
    var retainMaxBytes = RetentionPolicy().maxBytes

    @Option(
        parsing: .singleValue,
        help: ArgumentHelp(
            "Per-filter retention, repeatable: FILTER=MESSAGES[,AGE_SECONDS] (first match wins), e.g. 'logs/#=100,3600'.",
            valueName: "filter=limits"))
    var retainOverride: [String] = []

    @Flag(
        inversion: .prefixedNo,
        help: "Accept permessage-deflate (RFC 7692) from clients that offer it; a publish is compressed once for all of them.")
    var compression = true

    @Option(help: "zlib compression level for outbound messages, 1 (fastest) to 9 (smallest).")
    var compressionLevel = BrokerConfiguration().compressionLevel

    @Option(help: "Messages whose frame body is shorter than this many bytes are sent uncompressed.")
    var compressionThreshold = BrokerConfiguration().compressionThresholdBytes

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    func validate() throws {
        guard (1...65535).contains(port) || port == 0 else { throw ValidationError("--port must be 0...65535") }
        guard maxMessageBytes > 0 else { throw ValidationError("--max-message-bytes must be positive") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        guard ["normal", "full"].contains(durability) else { throw ValidationError("--durability must be normal or full") }
        guard retainMaxMessages > 0, retainMaxAge > 0, retainMaxBytes > 0 else {
            throw ValidationError("retention limits must be positive")
        }
        guard (1...9).contains(compressionLevel) else { throw ValidationError("--compression-level must be 1...9") }
        guard compressionThreshold >= 0 else { throw ValidationError("--compression-threshold must be 0 or more") }
        _ = try retentionOverrides()
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "broker")
        FileDescriptorLimit.raiseToHardLimit(logger: logger)

        var configuration = BrokerConfiguration()
        configuration.host = host
        configuration.port = port
        configuration.echoPath = echoPath
        configuration.maxMessageBytes = maxMessageBytes
        configuration.maxFrameBytes = maxFrameBytes ?? maxMessageBytes
        configuration.maxTopicBytes = maxTopicBytes
        configuration.maxSubscriptionsPerConnection = maxSubscriptions
        configuration.maxOutboundBytes = maxOutboundBytes
        configuration.pingInterval = .nanoseconds(Int64(pingInterval * 1e9))
        configuration.pongTimeout = .nanoseconds(Int64(pongTimeout * 1e9))
        configuration.shutdownGracePeriod = .nanoseconds(Int64(shutdownGrace * 1e9))
        if let threads { configuration.eventLoopThreads = threads }
        configuration.compressionEnabled = compression
        configuration.compressionLevel = compressionLevel
        configuration.compressionThresholdBytes = compressionThreshold

        var journalConfiguration = JournalConfiguration()
        journalConfiguration.durability = durability == "full" ? .full : .normal
        journalConfiguration.retention.maxMessagesPerTopic = retainMaxMessages
        journalConfiguration.retention.maxAge = .milliseconds(Int64(retainMaxAge * 1000))
        journalConfiguration.retention.maxBytes = retainMaxBytes
        journalConfiguration.retention.overrides = (try? retentionOverrides()) ?? []

        let journal: SQLiteJournal
        do {
            journal = try SQLiteJournal.open(directory: dataDir, configuration: journalConfiguration, logger: logger)
        } catch {
            Self.fail(error)
        }
        logger.info("journal open", metadata: ["directory": "\(dataDir)", "epoch": "\(journal.epoch)"])

        let server = BrokerServer(configuration: configuration, journal: journal, logger: logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: JournalService(journal: journal)),
                    .init(service: server),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch let error as IOError {
            FileHandle.standardError.write(Data("broker: cannot listen on \(host):\(port): \(error)\n".utf8))
            await journal.close()
            throw ExitCode(ExitCodes.cannotListen)
        }
    }

    /// Parses `--retain-override FILTER=MESSAGES[,AGE_SECONDS]` values.
    func retentionOverrides() throws -> [RetentionPolicy.Override] {
        try retainOverride.map { spec in
            let parts = spec.split(separator: "=", maxSplits: 1).map(String.init)
            let limits = parts.count == 2 ? parts[1].split(separator: ",").map(String.init) : []
            guard parts.count == 2, !parts[0].isEmpty, (1...2).contains(limits.count),
                let messages = Int(limits[0]), messages > 0
            else {
                throw ValidationError("--retain-override \(spec): expected FILTER=MESSAGES[,AGE_SECONDS]")
            }
            var age: Duration?
            if limits.count == 2 {
                guard let seconds = Double(limits[1]), seconds > 0 else {
                    throw ValidationError("--retain-override \(spec): AGE_SECONDS must be a positive number")
                }
                age = .milliseconds(Int64(seconds * 1000))
            }
            return RetentionPolicy.Override(filter: parts[0], maxMessagesPerTopic: messages, maxAge: age)
        }
    }

    static func fail(_ error: any Error) -> Never {
        let code: Int32
        switch error as? JournalError {
        case .locked?: code = ExitCodes.dataDirectoryLocked
        default: code = ExitCodes.dataDirectoryUnusable
        }
        FileHandle.standardError.write(Data("broker: \(error)\n".utf8))
        Foundation.exit(code)
    }
}

/// Keeps the journal open while the broker serves and closes it (committing what is pending)
/// after the listener has drained: the service group stops services in reverse order.
struct JournalService: Service {
    let journal: SQLiteJournal

    func run() async throws {
        try? await gracefulShutdown()
        await journal.close()
    }
}
