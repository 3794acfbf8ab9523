import BrokerClient
import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import NIOConcurrencyHelpers

/// Opens a SQLite journal in `directory` (created if missing).
func openJournal(_ directory: String) throws -> SQLiteJournal {
    try SQLiteJournal.open(directory: directory, configuration: JournalConfiguration(), logger: quietLogger("test-journal"))
}

/// A client with test-friendly settings: quick reconnects, quiet logs, and a request timeout long
/// enough for a loaded CI machine (no test waits for it to fire: at 5 s, a full run at load 10-15
/// saw replies arrive late and ten tests fail).
func makeClient(
    _ url: String, events: EventLog? = nil, requestTimeout: Duration = .seconds(30),
    backoff: Backoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
) -> BrokerClient {
    var configuration = testClientConfiguration(requestTimeout: requestTimeout)
    configuration.backoff = backoff
    if let events { configuration.onEvent = { events.append($0) } }
    return BrokerClient(url: url, configuration: configuration, logger: quietLogger("test-client"))
}

/// The library's defaults with its give-up bounds stretched for sanitizer runs (`patience`): the
/// request timeout (which also bounds a connect) and the keep-alive (two silent intervals drop
/// the connection; under a sanitizer a busy broker may stay silent longer).
func testClientConfiguration(requestTimeout: Duration = .seconds(30)) -> BrokerClient.Configuration {
    var configuration = BrokerClient.Configuration()
    configuration.requestTimeout = patience(requestTimeout)
    configuration.keepAlive = configuration.keepAlive.map { patience($0) }
    return configuration
}

/// Every event a client reported through `Configuration.onEvent`.
final class EventLog: Sendable {
    private let box = NIOLockedValueBox<[BrokerClient.Event]>([])

    func append(_ event: BrokerClient.Event) { box.withLockedValue { $0.append(event) } }
    var all: [BrokerClient.Event] { box.withLockedValue { $0 } }

    var connectedCount: Int { all.filter { if case .connected = $0 { true } else { false } }.count }
    var disconnectedCount: Int { all.filter { if case .disconnected = $0 { true } else { false } }.count }
    var gaps: [(filter: String, since: UInt64?)] {
        all.compactMap { if case .gap(let filter, let since) = $0 { (filter, since) } else { nil } }
    }
    var welcomes: [Welcome] { all.compactMap { if case .connected(let welcome) = $0 { welcome } else { nil } } }
}

/// Iterates a subscription in the background and keeps what it delivered.
final class Received: Sendable {
    struct State {
        var messages: [BrokerMessage] = []
        var finished = false
        var error: (any Error)?
    }

    private let box = NIOLockedValueBox(State())
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    private init() {}

    static func collect(_ subscription: BrokerSubscription) -> Received {
        let received = Received()
        let task = Task {
            do {
                for try await message in subscription {
                    received.box.withLockedValue { $0.messages.append(message) }
                }
                received.box.withLockedValue { $0.finished = true }
            } catch {
                received.box.withLockedValue {
                    $0.finished = true
                    $0.error = error
                }
            }
        }
        received.task.withLockedValue { $0 = task }
        return received
    }

    var messages: [BrokerMessage] { box.withLockedValue { $0.messages } }
    var count: Int { box.withLockedValue { $0.messages.count } }
    var finished: Bool { box.withLockedValue { $0.finished } }
    var error: (any Error)? { box.withLockedValue { $0.error } }

    /// Waits until at least `count` messages arrived.
    func wait(for count: Int, timeout: Duration = .seconds(30)) async throws {
        try await eventually("\(count) messages (have \(self.count): \(self.messages.map(\.summary)))", timeout: timeout) {
            self.count >= count
        }
    }

    /// Waits until a message satisfying `predicate` arrived, and returns it.
    @discardableResult
    func wait(timeout: Duration = .seconds(30), for what: String, _ predicate: @escaping (BrokerMessage) -> Bool) async throws -> BrokerMessage {
        var found: BrokerMessage?
        try await eventually("\(what) (have \(self.messages.map(\.summary)))", timeout: timeout) {
            found = self.messages.first(where: predicate)
            return found != nil
        }
        return found!
    }

    func cancel() { task.withLockedValue { $0?.cancel() } }
}

extension BrokerMessage {
    /// Short text for failure messages.
    var summary: String {
        "\(topic)=\(json ?? "bytes\(bytes)")" + (offset.map { "@\($0)" } ?? "") + (replay ? "(replay)" : "")
    }
}
