#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on `<directory>/broker.lock`, held from `acquire` until `release`.
///
/// The lock belongs to the open file description, so a second acquire of the same directory is
/// refused even within one process, and the kernel drops it when the process dies (also on
/// `kill -9`), so a stale lock file never blocks a restart. Thread-safe.
final class DataDirectoryLock: Sendable {
    let path: String
    private let descriptor: Locked<Int32>

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = Locked(descriptor)
    }

    /// Takes the lock without waiting; `.locked` if another open file description holds it.
    static func acquire(directory: String) throws(JournalError) -> DataDirectoryLock {
        let path = directory + "/broker.lock"
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, DataDirectory.fileMode)
        guard descriptor >= 0 else {
            throw .unusable("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        fchmod(descriptor, DataDirectory.fileMode)  // also a lock file left by an older broker
        if flock(descriptor, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            close(descriptor)
            if code == EWOULDBLOCK { throw .locked(path: directory) }
            throw .unusable("cannot lock \(path): \(String(cString: strerror(code)))")
        }
        return DataDirectoryLock(path: path, descriptor: descriptor)
    }

    /// Drops the lock; later calls do nothing.
    func release() {
        descriptor.withLock { descriptor in
            guard descriptor >= 0 else { return }
            flock(descriptor, LOCK_UN)
            close(descriptor)
            descriptor = -1
        }
    }

    deinit { release() }
}
