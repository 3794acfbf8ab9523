import Foundation
import GRDB
import GRDBSQLite
import Logging

/// Checkpoints the journal's WAL on a thread and connection of its own, so that the writer's
/// commits neither copy pages into the database file nor wait for the checkpoint's fsyncs.
///
/// SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages, on
/// the writer thread, with two fsyncs: about 11 per 200,000 retained publishes here, 15-30 ms
/// each, during which no group commit happens. Instead, the writer's connection reports the WAL
/// size after each commit through `sqlite3_wal_hook` (installing a hook turns SQLite's own
/// checkpointing off); past `backgroundPages` this thread is woken and runs a PASSIVE checkpoint
/// while the writer goes on. Should the WAL still reach `writerPages` (a checkpoint that cannot
/// finish while commits keep coming), the writer checkpoints in its commit, as SQLite would.
/// Durability is unchanged: a checkpoint is the same operation on either connection.
///
/// A PASSIVE checkpoint never waits for the writer, so under a steady stream of commits it never
/// quite catches up, and SQLite only starts the WAL over after one that did: the WAL file would
/// grow to `writerPages`. Past `restartPages` the checkpointer therefore follows its PASSIVE
/// checkpoint with a RESTART one, which holds the writer back for the few frames left and the
/// fsyncs (once per 16 MB of WAL instead of once per 4 MB).
final class WALCheckpointer: @unchecked Sendable {
    static let backgroundPages: CInt = 1_000
    static let restartPages = 4_000
    static let writerPages: CInt = 16_000

    private let queue: DatabaseQueue
    private let logger: Logger
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var requested = false
    private var running = true
    private var finished = false

    /// Opens the checkpointing connection to the journal at `path` (already in WAL mode).
    init(path: String, configuration: Configuration, logger: Logger) throws {
        var configuration = configuration
        configuration.label = "broker-journal-checkpointer"
        self.queue = try DatabaseQueue(path: path, configuration: configuration)
        self.logger = logger
    }

    func start() {
        let thread = Thread { [self] in
            nameCurrentThread("journal-ckpt")
            run()
        }
        thread.start()
    }

    /// Installs the WAL hook on the writer's connection; call on the writer's queue.
    func install(on db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, { context, connection, _, pages in
            let checkpointer = Unmanaged<WALCheckpointer>.fromOpaque(context!).takeUnretainedValue()
            if pages >= WALCheckpointer.writerPages {
                sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
            } else if pages >= WALCheckpointer.backgroundPages {
                checkpointer.request()
            }
            return SQLITE_OK
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    /// Removes the hook (SQLite's automatic checkpoint applies again); on the writer's queue.
    func uninstall(from db: Database) {
        sqlite3_wal_hook(db.sqliteConnection, nil, nil)
        sqlite3_wal_autocheckpoint(db.sqliteConnection, 1_000)
    }

    private func request() {
        condition.lock()
        if !requested {
            requested = true
            condition.signal()
        }
        condition.unlock()
    }

    /// Ends the thread (after a checkpoint in progress) and closes the connection.
    func stop() {
        condition.lock()
        running = false
        condition.signal()
        while !finished { condition.wait() }
        condition.unlock()
        try? queue.close()
    }

    private func run() {
        while true {
            condition.lock()
            while !requested && running { condition.wait() }
            let stop = !running
            requested = false
            condition.unlock()
            if stop { break }
            do {
                try queue.writeWithoutTransaction { db in
                    let (walFrames, _) = try db.checkpoint(.passive)
                    if walFrames >= Self.restartPages { _ = try db.checkpoint(.restart) }
                }
            } catch {
                logger.warning("journal checkpoint failed", metadata: ["error": "\(Schema.reason(error))"])
            }
        }
        condition.lock()
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
