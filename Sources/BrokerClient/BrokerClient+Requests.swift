import BrokerProtocol
import NIOConcurrencyHelpers
import NIOCore

/// Sending requests and matching their replies.
extension BrokerClient {
    /// Builds a request's frame under the client's lock, given the id it must carry.
    typealias Prepare = @Sendable (inout ClientState, UInt32) -> Result<Connection.Outbound, BrokerClientError>

    /// Sends one request and waits for its reply, within `deadline` (which also bounds the wait for
    /// a connection while reconnecting). `subscription` marks a subscribe of that subscription.
    func request(deadline: ContinuousClock.Instant, subscription: UInt64? = nil, prepare: @escaping Prepare)
        async throws -> ServerMessage
    {
        let reply = try await withDeadline(deadline) {
            let connection = try await self.waitForConnection()
            return try await self.send(on: connection, subscription: subscription, prepare: prepare)
        }
        if case .error(let code, let message, _) = reply { throw BrokerClientError.server(code: code, message: message) }
        return reply
    }

    /// Registers the waiter, enqueues the frame (both under the lock, so that requests go out in
    /// the order their ids were given and never on a connection already replaced) and waits.
    private func send(on connection: Connection, subscription: UInt64?, prepare: @escaping Prepare) async throws -> ServerMessage {
        let requestID = NIOLockedValueBox<UInt32?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<ServerMessage, any Error>) in
                let failure: (any Error)? = state.withLockedValue { s in
                    guard let current = s.connection, current === connection else {
                        return s.isClosed ? BrokerClientError.closed : BrokerClientError.connectionLost
                    }
                    let id = s.requests.allocateID()
                    let frame: Connection.Outbound
                    switch prepare(&s, id) {
                    case .success(let built): frame = built
                    case .failure(let error): return error
                    }
                    if Task.isCancelled { return CancellationError() }
                    s.requests.insert(subscription.map { .subscribe(localID: $0, continuation) } ?? .reply(continuation), for: id)
                    requestID.withLockedValue { $0 = id }
                    if !connection.send(frame) {
                        _ = s.requests.take(id)
                        return BrokerClientError.connectionLost
                    }
                    return nil
                }
                if let failure { continuation.resume(throwing: failure) }
            }
        } onCancel: {
            guard let id = requestID.withLockedValue({ $0 }) else { return }
            state.withLockedValue { $0.requests.take(id) }?.fail(CancellationError())
        }
    }

    /// The current connection, or waits for the reconnect to establish one.
    func waitForConnection() async throws -> Connection {
        let token = state.withLockedValue { $0.makeToken() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Connection, any Error>) in
                let immediate: Result<Connection, any Error>? = state.withLockedValue { s in
                    switch s.phase {
                    case .connected(let connection): return .success(connection)
                    case .closed: return .failure(BrokerClientError.closed)
                    case .idle: return .failure(BrokerClientError.notConnected)
                    case .connecting, .reconnecting:
                        if Task.isCancelled { return .failure(CancellationError()) }
                        s.connectionWaiters[token] = continuation
                        return nil
                    }
                }
                if let immediate { continuation.resume(with: immediate) }
            }
        } onCancel: {
            state.withLockedValue { $0.connectionWaiters.removeValue(forKey: token) }?.resume(throwing: CancellationError())
        }
    }

    /// Runs `body`, throwing `.timeout` (and cancelling it) if `deadline` passes first.
    func withDeadline<T: Sendable>(
        _ deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T.self) { group in
            group.addTask { try await body() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                throw BrokerClientError.timeout
            }
            defer { group.cancelAll() }
            return try await group.next()!
        }
    }

    /// Sends a publish built by `frame` and turns the `ack` into a `PublishAck`.
    func publishFrame(_ frame: @escaping @Sendable (UInt32) -> Connection.Outbound) async throws -> PublishAck {
        let deadline = ContinuousClock.now + configuration.requestTimeout
        let reply = try await request(deadline: deadline) { s, id in
            let built = frame(id)
            let size: Int
            switch built {
            case .text(let buffer), .binary(let buffer): size = buffer.readableBytes
            case .close: size = 0
            }
            if let limit = s.welcome?.maxMessageBytes, limit > 0, size > limit {
                return .failure(.tooLarge(size: size, limit: limit))
            }
            return .success(built)
        }
        guard case .ack(_, let offset) = reply else { throw BrokerClientError.protocolViolation("unexpected reply to publish") }
        return PublishAck(offset: offset)
    }

    /// Removes a subscription locally and, when no other subscription of this client uses the same
    /// filter, tells the broker (removal and the `unsubscribe` frame happen under one lock, so a
    /// concurrent subscribe to the same filter cannot be overtaken by it).
    func unsubscribe(localID: UInt64) async throws {
        let deadline = ContinuousClock.now + configuration.requestTimeout
        let outcome: (entry: SubscriptionEntry?, send: Bool) = state.withLockedValue { s in
            guard let entry = s.subscriptions.removeValue(forKey: localID) else { return (nil, false) }
            let shared = s.subscriptions.values.contains { $0.resume.filter == entry.resume.filter }
            return (entry, !shared && s.connection != nil)
        }
        guard let entry = outcome.entry else { return }
        entry.continuation.finish()
        guard outcome.send else { return }
        let filter = entry.resume.filter
        do {
            _ = try await request(deadline: deadline) { s, id in
                // A subscribe to the same filter made meanwhile keeps the broker's subscription.
                if s.subscriptions.values.contains(where: { $0.resume.filter == filter }) { return .failure(.closed) }
                return .success(.text(RequestEncoder.unsubscribe(id: id, filter: filter)))
            }
        } catch BrokerClientError.connectionLost, BrokerClientError.closed, BrokerClientError.notConnected {
            // The connection is gone, and with it the broker's subscription.
        }
    }

    static func validatePublishTopic(_ topic: String) throws(BrokerClientError) {
        do { try Topic.validateName(topic) } catch { throw .invalidTopic(topic, reason: error.description) }
    }
}
