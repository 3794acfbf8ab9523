import NIOConcurrencyHelpers

/// One connection attempt, so that an attempt given up for lack of a welcome can never become
/// the client's connection later (WSClient cannot abort an upgrade in progress, so a stalled
/// attempt is abandoned rather than cancelled; if its upgrade completes after all, its handler
/// returns at once and the connection is closed).
final class ConnectAttempt: Sendable {
    private enum State { case pending, welcomed, abandoned }
    private let state = NIOLockedValueBox(State.pending)

    /// The welcome arrived in time: the attempt becomes the connection. False if abandoned.
    func markWelcomed() -> Bool {
        state.withLockedValue { state in
            guard state == .pending else { return state == .welcomed }
            state = .welcomed
            return true
        }
    }

    /// Gives up on an attempt that has no welcome yet; false if it already has one.
    func abandonIfNotWelcomed() -> Bool {
        state.withLockedValue { state in
            guard state == .pending else { return state == .abandoned }
            state = .abandoned
            return true
        }
    }

    var isAbandoned: Bool { state.withLockedValue { $0 == .abandoned } }
}

/// Resumes a continuation once, whichever of several racers comes first.
final class ResumeOnce<Value: Sendable>: Sendable {
    private let continuation: NIOLockedValueBox<CheckedContinuation<Value, Never>?>

    init(_ continuation: CheckedContinuation<Value, Never>) {
        self.continuation = NIOLockedValueBox(continuation)
    }

    func resume(_ value: Value) {
        let continuation = self.continuation.withLockedValue { stored in
            defer { stored = nil }
            return stored
        }
        continuation?.resume(returning: value)
    }
}
