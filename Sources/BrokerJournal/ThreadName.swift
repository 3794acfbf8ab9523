import Foundation

/// Names the calling thread, as `top -H`, `perf` and `/proc/PID/task/*/comm` show it: Foundation's
/// `Thread.name` does not reach the kernel on Linux, and Glibc's `pthread_setname_np` is not
/// imported into Swift. Linux keeps 15 bytes. Best effort: elsewhere, or on failure, nothing.
func nameCurrentThread(_ name: String) {
    #if os(Linux)
    if let file = fopen("/proc/thread-self/comm", "w") {
        fputs(String(decoding: name.utf8.prefix(15), as: UTF8.self), file)
        fclose(file)
    }
    #endif
}
