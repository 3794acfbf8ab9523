import ArgumentParser
import BrokerJournal
import BrokerJournalPostgres
import BrokerRuntime
import BrokerServer
import BrokerSettings
import Foundation
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the broker (the default command).",
        discussion: """
            Every setting below is also an environment variable and a configuration file key. \
            Precedence: flags > environment (BROKER_*) > configuration file (--config or \
            BROKER_CONFIG; YAML or TOML) > defaults. Reference: docs/configuration.md \
            (`broker config reference`).

            SETTINGS:
            \(SettingsReference.helpText())

            \(exitCodesHelp)
            """)

    @Option(help: ArgumentHelp("Configuration file, YAML (.yaml, .yml) or TOML (.toml); also BROKER_CONFIG.", valueName: "file"))
    var config: String?

    @Argument(
        parsing: .allUnrecognized,
        help: ArgumentHelp("Setting flags, e.g. --port 9000 --log-format json (listed below).", valueName: "settings"))
    var settings: [String] = []

    func validate() throws {
        _ = try resolve()
    }

    func resolve() throws -> BrokerSettings {
        do {
            return try SettingsLoader.resolve(
                configFile: config, environment: ProcessInfo.processInfo.environment,
                flags: SettingsLoader.fromFlags(settings))
        } catch let error as SettingError {
            throw ValidationError("\(error)")
        }
    }

    func run() async throws {
        let settings = try resolve()
        let logLevel = bootstrapLogging(settings)
        let logger = Logger(label: "broker")
        let openFileLimit = FileDescriptorLimit.raiseToHardLimit(logger: logger)

        var configuration = settings.resolvedServer
        // An open broker (no credentials) serves loopback only, unless asked for explicitly.
        if let problem = configuration.openOnPublicAddressProblem {
            FileHandle.standardError.write(Data("broker: configuration error: \(problem)\n".utf8))
            throw ExitCode(ExitCodes.badConfiguration)
        }
        // Nor is an admin listener beyond loopback served without an API key or a JWT key.
        if let problem = configuration.adminOpenOnPublicAddressProblem {
            FileHandle.standardError.write(Data("broker: configuration error: \(problem)\n".utf8))
            throw ExitCode(ExitCodes.badConfiguration)
        }
        do { _ = try await Authenticator.make(configuration) } catch {
            FileHandle.standardError.write(Data("broker: configuration error: auth.jwt-public-key: \(error)\n".utf8))
            throw ExitCode(ExitCodes.badConfiguration)
        }
        if let secret = configuration.jwtSecret, secret.utf8.count < 32 {
            logger.warning("auth.jwt-secret is shorter than 32 bytes: HS256 tokens signed with it can be brute-forced")
        }
        if !configuration.hasCredentials {
            logger.notice("no credentials configured: the broker is open to every client that reaches \(configuration.host)")
        }
        if configuration.maxConnections == 0 {
            // limits.max-connections 0: what the open-file limit allows, with headroom.
            configuration.maxConnections = FileDescriptorLimit.connectionCap(openFileLimit: openFileLimit)
            logger.info("connection limit", metadata: ["max-connections": "\(configuration.maxConnections)"])
        }
        if let tls = configuration.tls {
            do { try BrokerServer.checkTLS(tls) } catch {
                FileHandle.standardError.write(Data("broker: TLS certificate or key unusable: \(error)\n".utf8))
                throw ExitCode(ExitCodes.tlsUnusable)
            }
        }

        let journal = await Self.openJournal(settings, logger: logger)

        var metrics: BrokerMetrics?
        var render: (@Sendable () -> [UInt8])?
        if settings.metricsEnabled {
            let registry = PrometheusCollectorRegistry()
            var factory = PrometheusMetricsFactory(registry: registry)
            factory.durationHistogramBuckets[BrokerMetrics.journalAppendLabel] = BrokerMetrics.journalAppendBuckets
            MetricsSystem.bootstrap(factory)
            metrics = BrokerMetrics(factory: factory)
            render = { MetricsHelp.exposition(registry.emitToBuffer()) }
        }

        let server = BrokerServer(
            configuration: configuration, journal: journal, logger: logger, metrics: metrics, renderMetrics: render)
        // Stopped in reverse order on SIGTERM/SIGINT: metrics, then the listener drains (1001 to
        // every client, within shutdown-grace), then the journal commits what is pending.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: JournalService(journal: journal)),
            .init(service: server),
        ]
        // Hands memory freed after a wave of disconnects back to the system (docs/operations.md).
        services.append(.init(service: MemoryReclaimer(server: server, logger: logger)))
        // SIGHUP: the settings read again, what can change put in force (docs/operations.md).
        let reloader = SettingsReloader(
            started: settings, server: server, logLevel: logLevel, openFileLimit: openFileLimit, logger: logger,
            read: { [self] in try self.resolve() })
        services.append(.init(service: await ReloadOnHangUp.make(reloader)))
        if settings.metricsEnabled {
            services.append(.init(service: MetricsService(server: server, interval: .milliseconds(Int64(settings.metricsInterval * 1000)))))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch let error as IOError {
            FileHandle.standardError.write(Data("broker: cannot listen on \(configuration.host):\(configuration.port): \(error)\n".utf8))
            await journal.close()
            throw ExitCode(ExitCodes.cannotListen)
        }
        logger.info("stopped")
    }

    /// JSON or text lines on standard error, at a level a reload can change.
    func bootstrapLogging(_ settings: BrokerSettings) -> LogLevelSwitch {
        let level = LogLevelSwitch(Logger.Level(rawValue: settings.logLevel) ?? .info)
        let json = settings.logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json { return level.handler(JSONLogHandler.standardError(label: label)) }
            return level.handler(StreamLogHandler.standardError(label: label))
        }
        return level
    }

    /// The SQLite journal in the data directory, or in cluster mode the PostgreSQL one
    /// (docs/cluster.md); exits when it cannot be opened.
    static func openJournal(_ settings: BrokerSettings, logger: Logger) async -> any Journal {
        if !settings.clusterPostgresURL.isEmpty {
            do {
                let url = try PostgresURL(settings.clusterPostgresURL)
                return try await PostgresJournal.open(
                    url: url, nodeName: settings.resolvedNodeName, configuration: settings.journal, logger: logger)
            } catch {
                fail(error)
            }
        }
        do {
            // The journal logs its own "journal open" line.
            return try SQLiteJournal.open(directory: settings.dataDirectory, configuration: settings.journal, logger: logger)
        } catch {
            fail(error)
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
    let journal: any Journal

    func run() async throws {
        try? await gracefulShutdown()
        await journal.close()
    }
}
