import Foundation
import GRDB
import Logging
import NIOCore

/// The broker's journal: SQLite (WAL) in `<directory>/journal.sqlite` through GRDB.
///
/// - Appends, snapshots and clears go through one `JournalWriter` thread (group commits, completions
///   serially in offset order, see `Journal`).
/// - Replay pages, `prunedAfter` and `stats` run on GRDB's reader connections (their own dispatch
///   queues, never the caller's event loop), each in one read transaction, and complete the
///   returned future on the event loop given.
/// - The data directory is locked (`flock` on `broker.lock`) from `open` until `close`.
///
/// Call `close()` before dropping the journal: it is what stops the writer thread.
public final class SQLiteJournal: Journal {
    public let epoch: String
    /// The data directory.
    public let directory: String

    private let pool: DatabasePool
    private let writer: JournalWriter
    private let checkpointer: WALCheckpointer
    private let directoryLock: DataDirectoryLock
    private let logger: Logger
    private let state = Locked(Lifecycle.open)

    private enum Lifecycle {
        case open
        case closing([CheckedContinuation<Void, Never>])
        case closed
    }

    private init(directory: String, pool: DatabasePool, checkpointer: WALCheckpointer, meta: JournalMeta,
                 lock: DataDirectoryLock, configuration: JournalConfiguration, logger: Logger) {
        self.directory = directory
        self.checkpointer = checkpointer
        self.epoch = meta.epoch
        self.pool = pool
        self.directoryLock = lock
        self.logger = logger
        self.writer = JournalWriter(pool: pool, meta: meta, configuration: configuration, logger: logger)
    }

    /// Opens (or creates) the journal in `directory`, creating the directory if missing. The
    /// directory is created `0700` and the journal's files are made `0600` (`DataDirectory`).
    ///
    /// Throws `.locked` when another journal (this process or another) has the directory open,
    /// and `.unusable` with a one-line reason when the directory or `journal.sqlite` cannot be used:
    /// unreadable, not a SQLite database, not a journal, or a newer schema. It never wipes or
    /// rewrites such a file.
    public static func open(
        directory: String,
        configuration: JournalConfiguration = JournalConfiguration(),
        logger: Logger
    ) throws(JournalError) -> SQLiteJournal {
        try DataDirectory.prepare(directory, logger: logger)
        let lock = try DataDirectoryLock.acquire(directory: directory)
        let path = directory + "/journal.sqlite"
        try Schema.checkFile(at: path)
        try Schema.inspect(at: path)
        try DataDirectory.makeJournalFilesPrivate(path)
        let pool = try Schema.openPool(at: path, durability: configuration.durability)
        let meta: JournalMeta
        let checkpointer: WALCheckpointer
        do {
            try Schema.migrate(pool, path: path)
            meta = try pool.read(JournalMeta.load)
            if try pool.read({ try Int.fetchOne($0, sql: "PRAGMA auto_vacuum") }) != 2 {
                // Made by a broker before incremental auto-vacuum: retention frees pages for reuse,
                // but the file keeps the largest size it reached.
                logger.notice("journal file does not shrink after retention; to enable it, stop the broker and run: sqlite3 \(path) 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'", metadata: ["path": "\(path)"])
            }
            checkpointer = try WALCheckpointer(
                path: path, configuration: Schema.configuration(durability: configuration.durability), logger: logger)
            pool.writeWithoutTransaction { checkpointer.install(on: $0) }
        } catch {
            try? pool.close()
            throw error as? JournalError ?? .unusable("cannot read \(path): \(Schema.reason(error))")
        }
        let journal = SQLiteJournal(directory: directory, pool: pool, checkpointer: checkpointer, meta: meta,
                                    lock: lock, configuration: configuration, logger: logger)
        checkpointer.start()
        journal.writer.start()
        logger.info("journal open", metadata: [
            "path": "\(path)", "epoch": "\(meta.epoch)", "last_offset": "\(meta.lastOffset)",
            "messages": "\(meta.messageCount)", "durability": "\(configuration.durability)",
        ])
        return journal
    }

    public func append(_ request: any JournalAppendRequest) {
        writer.submit(.append(request))
    }

    public func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        writer.submit(.snapshot(completion))
    }

    public func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        writer.onCompletionRunEnded(handler)
    }

    public func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        read(on: eventLoop) { db in try JournalQueries.replayPage(query, db) }
    }

    public func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        read(on: eventLoop) { db in try JournalQueries.prunedAfter(offset, filter: filter, db) }
    }

    public func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        writer.submit(.clear(filter, { promise.completeWith($0.mapError { $0 as any Error }) }))
        return promise.futureResult
    }

    /// Applies retention now, behind every request submitted before: runs retention passes on the
    /// writer until one has nothing more to remove, then calls `completion` (on the writer
    /// thread). Background passes keep their own schedule. For tests, which need retention to
    /// have run at a known point instead of waiting for the background passes.
    package func applyRetention(completion: @escaping @Sendable () -> Void) {
        writer.submit(.applyRetention(completion))
    }

    package func applyRetention() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            applyRetention { done.resume() }
        }
    }

    public func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        read(on: eventLoop, JournalQueries.stats)
    }

    public func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        read(on: eventLoop) { db in try JournalQueries.retainedTopics(query, db) }
    }

    public func close() async {
        let first: Bool = state.withLock { state in
            if case .open = state {
                state = .closing([])
                return true
            }
            return false
        }
        if first {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                writer.stop { done.resume() }
            }
            // Back to SQLite's own checkpointing for whatever runs on the writer's connection
            // until it closes.
            try? await pool.writeWithoutTransaction { checkpointer.uninstall(from: $0) }
            checkpointer.stop()
            do {
                try pool.close()
            } catch {
                logger.error("journal close failed", metadata: ["error": "\(Schema.reason(error))"])
            }
            directoryLock.release()
            logger.info("journal closed", metadata: ["path": "\(directory)"])
            let waiters = state.withLock { state in
                defer { state = .closed }
                if case .closing(let waiters) = state { return waiters }
                return []
            }
            waiters.forEach { $0.resume() }
            return
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let closed: Bool = state.withLock { state in
                if case .closing(var waiters) = state {
                    waiters.append(done)
                    state = .closing(waiters)
                    return false
                }
                return true
            }
            if closed { done.resume() }
        }
    }

    private func read<T: Sendable>(
        on eventLoop: any EventLoop, _ body: @escaping @Sendable (Database) throws -> T
    ) -> EventLoopFuture<T> {
        let isOpen = state.withLock { state in
            if case .open = state { return true }
            return false
        }
        guard isOpen else { return eventLoop.makeFailedFuture(JournalError.closed) }
        let promise = eventLoop.makePromise(of: T.self)
        pool.asyncRead { result in
            do {
                promise.succeed(try body(try result.get()))
            } catch let error as JournalError {
                promise.fail(error)
            } catch {
                promise.fail(JournalError.failed(Schema.reason(error)))
            }
        }
        return promise.futureResult
    }
}
