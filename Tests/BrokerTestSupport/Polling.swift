/// A test step that did not happen in time (or another failure with a message).
package struct TestFailure: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Polls `condition` every `interval` until it holds; throws `TestFailure(what)` after `timeout`,
/// a bound for a step that never comes, not a speed requirement: 30 s by default, because under
/// the sanitizers on a loaded machine a client's reconnect to a restarted broker took over 5 s.
/// With `orElse`, runs `step` between polls (e.g. publish again until a subscriber sees it).
package func eventually(
    _ what: @autoclosure () -> String = "a condition", timeout: Duration = .seconds(30),
    every interval: Duration = .milliseconds(10), _ condition: () async throws -> Bool,
    orElse step: () async throws -> Void = {}
) async throws {
    let timeout = patience(timeout)
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        if ContinuousClock.now >= deadline { throw TestFailure("timed out after \(timeout) waiting for \(what())") }
        try await step()
        try await Task.sleep(for: interval)
    }
}

/// Runs `body`, or throws `TestFailure` if it has not finished after `timeout`: a bound for a
/// step that could hang (an async sequence that stops producing), not a speed requirement.
package func withDeadline<T: Sendable>(
    _ what: String, timeout: Duration, _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let timeout = patience(timeout)
    return try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next()!  else { throw TestFailure("timed out after \(timeout): \(what)") }
        return result
    }
}
