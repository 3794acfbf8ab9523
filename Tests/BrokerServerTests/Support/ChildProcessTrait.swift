import BrokerTestSupport
import Testing

extension Trait where Self == ConditionTrait {
    /// For suites and tests that start child processes: skipped, with the reason, when they
    /// are off (`childProcessesAllowed`: ThreadSanitizer runs).
    static var spawnsChildProcesses: Self {
        .enabled(if: childProcessesAllowed, Comment(rawValue: childProcessesOffReason))
    }
}
