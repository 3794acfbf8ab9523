import BrokerRuntime
import BrokerServer
import BrokerSettings
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

/// Reads the settings again on SIGHUP (the same configuration file, environment and flags) and
/// puts in force what a running broker can change: credentials, the TLS certificate, limits read
/// per connection or request, the log level and the access log (docs/operations.md
/// "Reloading"). Logs one line per changed setting, by name only, and a warning for each change
/// that needs a restart. A reading that fails (a bad file, an unusable key or certificate, an
/// open broker on a public address) changes nothing.
actor SettingsReloader {
    /// What the broker started with: a change of a setting that is read once is measured from it.
    private let started: BrokerSettings
    /// The last reading put in force.
    private var inForce: BrokerSettings
    /// The bytes of the TLS certificate and key last loaded: a renewed certificate usually keeps
    /// its file names.
    private var tlsFiles: Data?
    private let server: BrokerServer
    private let logLevel: LogLevelSwitch
    private let openFileLimit: Int
    private let logger: Logger
    private let read: @Sendable () throws -> BrokerSettings

    init(
        started: BrokerSettings, server: BrokerServer, logLevel: LogLevelSwitch, openFileLimit: Int, logger: Logger,
        read: @escaping @Sendable () throws -> BrokerSettings
    ) {
        self.started = started
        self.inForce = started
        self.tlsFiles = Self.contents(started.resolvedServer.tls)
        self.server = server
        self.logLevel = logLevel
        self.openFileLimit = openFileLimit
        self.logger = logger
        self.read = read
    }

    func reload() async {
        logger.info("reloading settings (SIGHUP)")
        let new: BrokerSettings
        do {
            new = try read()
        } catch {
            logger.error("reload failed, nothing changed", metadata: ["error": "\(error)"])
            return
        }
        var configuration = new.resolvedServer
        if configuration.maxConnections == 0 {
            configuration.maxConnections = FileDescriptorLimit.connectionCap(openFileLimit: openFileLimit)
        }
        if let problem = configuration.openOnPublicAddressProblem ?? configuration.adminOpenOnPublicAddressProblem {
            logger.error("reload refused, nothing changed", metadata: ["error": "\(problem)"])
            return
        }
        let tlsFiles = Self.contents(configuration.tls)
        do {
            try await server.reload(configuration)
        } catch {
            logger.error("reload failed, nothing changed", metadata: ["error": "\(error)"])
            return
        }
        logLevel.level = Logger.Level(rawValue: new.logLevel) ?? logLevel.level

        var reloaded = SettingsChange(from: inForce, to: new).reloaded
        if server.configuration.tls != nil, tlsFiles != self.tlsFiles, !reloaded.contains(where: { $0.hasPrefix("tls.") }) {
            reloaded.append("tls.certificate")
        }
        let needRestart = SettingsChange(from: started, to: new).needRestart
        for key in reloaded {
            logger.notice("setting reloaded", metadata: ["key": "\(key)"])
        }
        for key in needRestart {
            logger.warning("setting changed, takes effect after a restart", metadata: ["key": "\(key)"])
        }
        if reloaded.isEmpty && needRestart.isEmpty {
            logger.info("reload: no setting changed")
        }
        inForce = new
        self.tlsFiles = tlsFiles
    }

    /// The certificate's and the key's bytes, to tell a renewed certificate from the same one.
    static func contents(_ tls: BrokerConfiguration.TLSFiles?) -> Data? {
        guard let tls else { return nil }
        var data = (try? Data(contentsOf: URL(fileURLWithPath: tls.certificateChainPath))) ?? Data()
        data += (try? Data(contentsOf: URL(fileURLWithPath: tls.privateKeyPath))) ?? Data()
        return data
    }
}

/// Runs a reload for each SIGHUP until the broker shuts down.
struct ReloadOnHangUp: Service {
    let reloader: SettingsReloader
    /// Trapping from before the listener opens (`make`): a SIGHUP that arrives while the services
    /// start waits here instead of ending the process (SIGHUP's default action).
    let hangUps: UnixSignalsSequence

    static func make(_ reloader: SettingsReloader) async -> ReloadOnHangUp {
        ReloadOnHangUp(reloader: reloader, hangUps: await UnixSignalsSequence(trapping: .sighup))
    }

    func run() async throws {
        for await _ in hangUps.cancelOnGracefulShutdown() {
            await reloader.reload()
        }
    }
}
