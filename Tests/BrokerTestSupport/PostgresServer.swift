import Foundation
import NIOConcurrencyHelpers
#if canImport(Glibc)
import Glibc
#endif

/// A real PostgreSQL server for the cluster tests: `initdb` into a fresh temporary directory,
/// `postgres` run as a child process on a free loopback port (its unix socket in the same
/// directory), trust authentication for the `postgres` user. Not through `pg_ctl start`: this
/// harness waits for the server as its own child. Every command is spawned with `posix_spawn`
/// (`SpawnedProcess`), not Foundation's `Process`, whose `run()` can crash the test process on
/// Linux (see `SpawnedProcess`). PostgreSQL refuses to run as root, so when the tests
/// run as root the server runs as the user `pgtest` (created if missing).
///
/// `PostgresServer.isAvailable` says whether `initdb` was found (and child processes are allowed:
/// `childProcessesAllowed`); the tests that need a server are enabled only then (CI installs
/// PostgreSQL, so it always runs them).
package final class PostgresServer: @unchecked Sendable {
    package let directory: String
    package let port: Int
    private let binDirectory: String
    private let lock = NIOLock()
    private var server: SpawnedProcess?

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    package func url(database: String = "postgres") -> String {
        "postgres://postgres@127.0.0.1:\(port)/\(database)"
    }

    /// Where `initdb` and `postgres` are: `BROKER_TEST_PG_BIN` when set (a directory without
    /// them skips the tests), else the PATH or Debian's /usr/lib/postgresql/<version>/bin. The
    /// client tools `psql` and `pg_isready` are taken from the PATH.
    package static let binDirectory: String? = {
        let fileManager = FileManager.default
        let environment = ProcessInfo.processInfo.environment
        var candidates: [String]
        if let configured = environment["BROKER_TEST_PG_BIN"] {
            candidates = [configured]
        } else {
            candidates = (environment["PATH"] ?? "").split(separator: ":").map(String.init)
            let debian = "/usr/lib/postgresql"
            let versions = ((try? fileManager.contentsOfDirectory(atPath: debian)) ?? [])
                .sorted { $0.compare($1, options: .numeric) == .orderedDescending }
            candidates += versions.map { "\(debian)/\($0)/bin" }
        }
        return candidates.first {
            fileManager.isExecutableFile(atPath: "\($0)/initdb") && fileManager.isExecutableFile(atPath: "\($0)/postgres")
        }
    }()

    package static var isAvailable: Bool { binDirectory != nil && childProcessesAllowed }

    /// One server for the whole test process, started on first use and stopped at exit; each
    /// test makes a database of its own on it (`makeDatabase`).
    package static func shared() async throws -> PostgresServer {
        try await offCooperativePool {
            try sharedServer.withLockedValue { server in
                if let server { return server }
                let started = try PostgresServer.startBlocking()
                server = started
                atexit { PostgresServer.stopSharedAtExit() }
                return started
            }
        }
    }

    private static let sharedServer = NIOLockedValueBox<PostgresServer?>(nil)

    private static func stopSharedAtExit() {
        sharedServer.withLockedValue { $0?.stop() }
    }

    /// Initializes and starts a new server; call `stop()` when done.
    package static func start() async throws -> PostgresServer {
        try await offCooperativePool { try startBlocking() }
    }

    private static func startBlocking() throws -> PostgresServer {
        guard let bin = binDirectory else { throw TestFailure("PostgreSQL's initdb is not installed") }
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("broker-pg-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let server = PostgresServer(directory: directory, port: try unusedPort(), binDirectory: bin)
        try server.prepareOwnership()
        try server.run(bin + "/initdb", ["-D", server.dataDirectory, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        try server.startServerBlocking()
        return server
    }

    private init(directory: String, port: Int, binDirectory: String) {
        self.directory = directory
        self.port = port
        self.binDirectory = binDirectory
    }

    private var dataDirectory: String { directory + "/data" }

    /// Starts the (stopped) server, on the same port and data, and waits until it accepts
    /// connections.
    package func startServer() async throws {
        try await offCooperativePool { try self.startServerBlocking() }
    }

    private func startServerBlocking() throws {
        let postgres = [binDirectory + "/postgres", "-D", dataDirectory, "-p", "\(port)", "-k", directory,
                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"]
        let logPath = directory + "/server.log"
        let log = open(logPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard log >= 0 else { throw TestFailure("cannot open \(logPath)") }
        defer { close(log) }
        let process = try spawnInBackground(asUser(postgres, true), output: log, directory: directory)
        lock.withLock { server = process }
        let deadline = ContinuousClock.now + .seconds(120)
        while (try? run("/usr/bin/env", ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "\(port)"], asServerUser: false)) == nil {
            guard process.isRunning, ContinuousClock.now < deadline else {
                throw TestFailure("PostgreSQL did not start: \(self.log.suffix(2_000))")
            }
            // The poll's interval, not a decision: readiness is pg_isready's answer, and the only
            // bound is the 120 s give-up above. PostgreSQL offers no event to wait for from here.
            usleep(50_000)
        }
    }

    /// Stops the server: `fast` (SIGINT: clients disconnected, a clean shutdown) or `immediate`
    /// (SIGQUIT: as a crash would, no checkpoint). Waits until it has exited.
    package func stopServer(mode: String = "fast") async throws {
        try await offCooperativePool { try self.stopServerBlocking(mode: mode) }
    }

    private func stopServerBlocking(mode: String) throws {
        guard let process = lock.withLock({ server }) else { return }
        // The postmaster's pid, first line of postmaster.pid (as root, runuser is in between).
        let pidLine = (try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8))?
            .split(separator: "\n").first.flatMap { Int32($0) }
        if let pid = pidLine { kill(pid, mode == "immediate" ? SIGQUIT : SIGINT) }
        guard process.waitUntilExit(timeout: .seconds(120)) else { throw TestFailure("PostgreSQL did not stop") }
        lock.withLock { server = nil }
    }

    /// Stops the server if running and removes its directory.
    package func stop() {
        try? stopServerBlocking(mode: "immediate")
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates a fresh database and returns its URL.
    package func makeDatabase() async throws -> String {
        try await offCooperativePool { try self.makeDatabaseBlocking() }
    }

    private func makeDatabaseBlocking() throws -> String {
        let name = "t_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(16).lowercased()
        try run("/usr/bin/env", ["psql", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", "postgres",
                                 "-v", "ON_ERROR_STOP=1", "-q", "-c", "CREATE DATABASE \(name)"], asServerUser: false)
        return url(database: name)
    }

    /// Runs `sql` with psql in `database` (as the `postgres` superuser).
    package func execute(_ sql: String, database: String) async throws {
        try await offCooperativePool { try self.executeBlocking(sql, database: database) }
    }

    private func executeBlocking(_ sql: String, database: String) throws {
        try run("/usr/bin/env", ["psql", "-h", "127.0.0.1", "-p", "\(port)", "-U", "postgres", "-d", database,
                                 "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], asServerUser: false)
    }

    /// Runs `sql` with psql in `database` and returns its rows unaligned (`|` between columns,
    /// one row a line, no header), for tests that look at the tables themselves.
    package func query(_ sql: String, database: String) async throws -> String {
        try await offCooperativePool {
            try self.run("/usr/bin/env", ["psql", "-h", "127.0.0.1", "-p", "\(self.port)", "-U", "postgres", "-d", database,
                                          "-v", "ON_ERROR_STOP=1", "-q", "-At", "-c", sql], asServerUser: false)
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    /// The server's log, for failure messages.
    package var log: String { (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? "" }

    private static var isRoot: Bool { geteuid() == 0 }

    /// As root: makes sure the user `pgtest` exists and owns the directory.
    private func prepareOwnership() throws {
        guard Self.isRoot else { return }
        if (try? run("/usr/bin/id", ["-u", "pgtest"], asServerUser: false)) == nil {
            try run("/usr/sbin/useradd", ["-m", "pgtest"], asServerUser: false)
        }
        try run("/bin/chown", ["-R", "pgtest", directory], asServerUser: false)
    }

    /// Runs a command to its end in the server's directory; throws with its output when it fails.
    @discardableResult
    private func run(_ executable: String, _ arguments: [String], asServerUser: Bool = true) throws -> String {
        let result = try runToEnd(asUser([executable] + arguments, asServerUser), directory: directory)
        guard result.exitCode == 0 else {
            throw TestFailure("\(executable) \(arguments.joined(separator: " ")) failed (\(result.exitCode.map(String.init) ?? "signal")): \(result.output)\n\(log.suffix(2_000))")
        }
        return result.output
    }

    /// `command` as `pgtest` (through runuser) when root and `asServerUser`.
    private func asUser(_ command: [String], _ asServerUser: Bool) -> [String] {
        asServerUser && Self.isRoot ? ["/sbin/runuser", "-u", "pgtest", "--"] + command : command
    }
}
