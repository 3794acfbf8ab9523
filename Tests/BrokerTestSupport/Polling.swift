/// A test step that did not happen in time (or another failure with a message).
package struct TestFailure: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Polls `condition` every `interval` until it holds; throws `TestFailure(what)` after `timeout`.
/// With `orElse`, runs `step` between polls (e.g. publish again until a subscriber sees it).
package func eventually(
    _ what: @autoclosure () -> String = "a condition", timeout: Duration = .seconds(5),
    every interval: Duration = .milliseconds(10), _ condition: () async throws -> Bool,
    orElse step: () async throws -> Void = {}
) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        if ContinuousClock.now >= deadline { throw TestFailure("timed out after \(timeout) waiting for \(what())") }
        try await step()
        try await Task.sleep(for: interval)
    }
}
