import Foundation
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Keeps the data directory private, as PostgreSQL and Mosquitto expect theirs: the journal holds
/// every retained message, so only the broker's user may read it.
///
/// - A directory the broker creates is made `0700`. An existing one is left as it is (it may be
///   shared, such as a `--data-dir .`), but a warning is logged when its group or others have any
///   access.
/// - The files the broker owns there (`journal.sqlite`, its `-wal` and `-shm`, `broker.lock`) are
///   `0600` whatever the umask: the database is created empty with that mode before SQLite opens
///   it, SQLite gives its `-wal` and `-shm` the database's mode, and files left by an older
///   broker are changed to it.
enum DataDirectory {
    static let directoryMode: mode_t = 0o700
    static let fileMode: mode_t = 0o600

    /// Creates `directory` (`0700`) if missing, or warns when an existing one is open to others.
    static func prepare(_ directory: String, logger: Logger) throws(JournalError) {
        var status = stat()
        if stat(directory, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFDIR else {
                throw .unusable("data directory \(directory) exists and is not a directory")
            }
            if status.st_mode & 0o077 != 0 {
                logger.warning("data directory is accessible to other users; run chmod 700 on it", metadata: [
                    "path": "\(directory)", "mode": "\(String(status.st_mode & 0o777, radix: 8))",
                ])
            }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .unusable("cannot create data directory \(directory): \(error.localizedDescription)")
        }
        guard chmod(directory, directoryMode) == 0 else {
            throw .unusable("cannot make data directory \(directory) private: \(String(cString: strerror(errno)))")
        }
    }

    /// Gives the journal's database `0600`, creating it empty when missing (an empty file is a new
    /// journal), and its existing `-wal` and `-shm` files the same mode.
    static func makeJournalFilesPrivate(_ path: String) throws(JournalError) {
        let descriptor = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, fileMode)
        guard descriptor >= 0 else {
            throw .unusable("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        let changed = fchmod(descriptor, fileMode)
        let code = errno
        close(descriptor)
        guard changed == 0 else {
            throw .unusable("cannot make \(path) private: \(String(cString: strerror(code)))")
        }
        for suffix in ["-wal", "-shm"] where FileManager.default.fileExists(atPath: path + suffix) {
            guard chmod(path + suffix, fileMode) == 0 else {
                throw .unusable("cannot make \(path + suffix) private: \(String(cString: strerror(errno)))")
            }
        }
    }
}
