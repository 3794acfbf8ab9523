import BrokerProtocol
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// An async/await client of the broker (PROTOCOL.md v1) over one WebSocket connection.
///
/// ```swift
/// let client = BrokerClient(url: "ws://127.0.0.1:8080/ws")
/// try await client.connect()
/// let subscription = try await client.subscribe("sensors/#", history: 10)
/// let ack = try await client.publish("sensors/a/temp", json: ["celsius": 21.5], retain: true)
/// for try await message in subscription { print(message.topic, message.json ?? "") }
/// await client.close()
/// ```
///
/// - Requests carry numeric ids; replies are matched by id. An `error` reply throws
///   `BrokerClientError.server(code:message:)`; no reply within `Configuration.requestTimeout`
///   throws `.timeout`.
/// - After the first successful `connect()`, a dropped connection is re-established by itself
///   with exponential backoff and jitter (`Configuration.backoff`), and every live subscription is
///   subscribed again; those that asked for retained messages resume with `since`/`epoch` so that
///   nothing is lost or doubled (see `ResumeState`). Requests made while reconnecting wait for the
///   connection, up to the request timeout. A request in flight when the connection drops throws
///   `.connectionLost` (a publish may or may not have reached the broker; it is not re-sent).
/// - permessage-deflate is offered unless `Configuration.compression` is false.
///
/// All methods may be called from any task; the state is behind one lock.
public final class BrokerClient: Sendable {
    /// The WebSocket URL (`ws://` or `wss://`).
    public let url: String
    public let configuration: Configuration
    let logger: Logger
    let state = NIOLockedValueBox(ClientState())

    /// - Parameters:
    ///   - url: `ws://host:port/ws` or `wss://...`.
    ///   - configuration: timeouts, reconnect schedule, compression, buffers.
    ///   - logger: where the client logs (connection events at info, details at debug).
    public init(url: String, configuration: Configuration = .init(), logger: Logger = Logger(label: "BrokerClient")) {
        self.url = url
        self.configuration = configuration
        self.logger = logger
    }

    /// The broker's welcome on the current (or last) connection.
    public var welcome: Welcome? { state.withLockedValue { $0.welcome } }

    /// Whether a connection is established right now.
    public var isConnected: Bool { state.withLockedValue { $0.connection != nil } }

    /// Connects and waits for the broker's welcome.
    ///
    /// Throws `BrokerClientError.cannotConnect` if this first attempt fails (refused, upgrade
    /// refused, no welcome within the request timeout); the client then stays unconnected and
    /// `connect()` may be called again. Once connected, the client reconnects by itself until
    /// `close()`. Calling it while connected returns the current welcome.
    @discardableResult
    public func connect() async throws -> Welcome {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Welcome, any Error>) in
            let immediate: Result<Welcome, BrokerClientError>? = state.withLockedValue { s in
                switch s.phase {
                case .closed:
                    return .failure(.closed)
                case .connected:
                    return .success(s.welcome!)
                case .connecting, .reconnecting:
                    s.connectWaiters.append(continuation)
                    return nil
                case .idle:
                    s.connectWaiters.append(continuation)
                    s.phase = .connecting
                    s.runTask = Task { await self.runLoop() }
                    return nil
                }
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    /// Subscribes to `filter` (`+` and `#` wildcards allowed) and returns its messages.
    ///
    /// - Parameters:
    ///   - history: newest retained messages to replay per matching topic; nil leaves the broker's
    ///     default (1: the last value); 0 replays nothing.
    ///   - since: replay every retained message after this offset instead (overrides `history`).
    ///   - epoch: the journal epoch `since` refers to, if known (from an earlier `welcome`).
    /// - Returns: after the broker's `subscribed`; replayed messages follow in the sequence.
    /// - Throws: `.invalidTopic` for a malformed filter, `.server` when the broker refuses,
    ///   `.timeout`, `.connectionLost`, `.notConnected`, `.closed`.
    public func subscribe(_ filter: String, history: Int? = nil, since: UInt64? = nil, epoch: String? = nil)
        async throws -> BrokerSubscription
    {
        do { try Topic.validateFilter(filter) } catch { throw BrokerClientError.invalidTopic(filter, reason: error.description) }
        if let history, history < 0 { throw BrokerClientError.invalidTopic(filter, reason: "history must be ≥ 0") }
        let deadline = ContinuousClock.now + configuration.requestTimeout
        let (stream, continuation) = AsyncThrowingStream.makeStream(
            of: BrokerMessage.self, bufferingPolicy: .bufferingOldest(max(1, configuration.subscriptionBufferSize)))
        let counters = BrokerSubscription.Counters()
        let localID = try state.withLockedValue { s throws(BrokerClientError) -> UInt64 in
            if s.isClosed { throw .closed }
            s.nextSubscriptionID += 1
            s.subscriptions[s.nextSubscriptionID] = SubscriptionEntry(
                resume: ResumeState(filter: filter, history: history, since: since, requestedEpoch: epoch, currentEpoch: nil),
                continuation: continuation, counters: counters)
            return s.nextSubscriptionID
        }
        do {
            let reply = try await request(deadline: deadline, subscription: localID) { s, id in
                guard var entry = s.subscriptions[localID] else { return .failure(.closed) }
                entry.resume.begin(currentEpoch: s.welcome?.epoch)
                entry.sentSince = entry.resume.initialSince
                s.subscriptions[localID] = entry
                return .success(.text(RequestEncoder.subscribe(id: id, entry.resume.initialRequest)))
            }
            guard case .subscribed = reply else { throw BrokerClientError.protocolViolation("unexpected reply to subscribe") }
        } catch {
            let entry = state.withLockedValue { $0.subscriptions.removeValue(forKey: localID) }
            entry?.continuation.finish()
            throw error
        }
        return BrokerSubscription(
            filter: filter, localID: localID, stream: stream, counters: counters,
            unsubscribe: { try await self.unsubscribe(localID: localID) },
            onRelease: { [weak self] in
                guard let self, self.state.withLockedValue({ $0.subscriptions[localID] != nil }) else { return }
                Task { try? await self.unsubscribe(localID: localID) }
            })
    }

    /// Ends `subscription` (same as `subscription.unsubscribe()`).
    public func unsubscribe(_ subscription: BrokerSubscription) async throws {
        try await unsubscribe(localID: subscription.localID)
    }

    /// Publishes an `Encodable` value as the JSON `data` of a text publish and waits for the ack.
    ///
    /// - Returns: the ack; `offset` is set when `retain` is true and the broker journaled it.
    public func publish<Value: Encodable>(
        _ topic: String, json value: Value, retain: Bool = false, encoder: JSONEncoder = JSONEncoder()
    ) async throws -> PublishAck {
        let data: Data
        do { data = try encoder.encode(value) } catch { throw BrokerClientError.invalidJSON("\(error)") }
        return try await publish(topic, rawJSON: ByteBuffer(bytes: data), retain: retain)
    }

    /// Publishes raw JSON text (one JSON value, e.g. `{"n":1}` or `"hello"`) and waits for the ack.
    /// Throws `.invalidJSON` without sending if it is not valid JSON.
    public func publish(_ topic: String, rawJSON: String, retain: Bool = false) async throws -> PublishAck {
        try await publish(topic, rawJSON: ByteBuffer(string: rawJSON), retain: retain)
    }

    /// Publishes raw JSON bytes (UTF-8, one JSON value) and waits for the ack.
    public func publish(_ topic: String, rawJSON: ByteBuffer, retain: Bool = false) async throws -> PublishAck {
        try Self.validatePublishTopic(topic)
        try RequestEncoder.validateJSON(rawJSON)
        return try await publishFrame { id in .text(RequestEncoder.publish(id: id, topic: topic, json: rawJSON, retain: retain)) }
    }

    /// Publishes opaque bytes in a binary frame (with the ack bit) and waits for the ack.
    public func publish(_ topic: String, bytes: ByteBuffer, retain: Bool = false) async throws -> PublishAck {
        try Self.validatePublishTopic(topic)
        return try await publishFrame { id in .binary(RequestEncoder.binaryPublish(id: id, topic: topic, payload: bytes, retain: retain)) }
    }

    /// Publishes opaque bytes in a binary frame and waits for the ack.
    public func publish(_ topic: String, bytes: [UInt8], retain: Bool = false) async throws -> PublishAck {
        try await publish(topic, bytes: ByteBuffer(bytes: bytes), retain: retain)
    }

    /// Publishes opaque bytes in a binary frame and waits for the ack.
    public func publish(_ topic: String, bytes: Data, retain: Bool = false) async throws -> PublishAck {
        try await publish(topic, bytes: ByteBuffer(bytes: bytes), retain: retain)
    }

    /// Sends `ping` and waits for `pong`; returns the round-trip time.
    @discardableResult
    public func ping() async throws -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        let reply = try await request(deadline: start + configuration.requestTimeout) { _, id in
            .success(.text(RequestEncoder.ping(id: id)))
        }
        guard case .pong = reply else { throw BrokerClientError.protocolViolation("unexpected reply to ping") }
        return clock.now - start
    }

    /// Closes the connection (WebSocket close 1000) and stops reconnecting. Pending requests throw
    /// `.closed`; subscriptions finish. Waits briefly for the closing handshake. Idempotent.
    public func close() async {
        let taken = state.withLockedValue { s -> (Connection?, Task<Void, Never>?, Task<Void, Never>?, [Waiter], [CheckedContinuation<Connection, any Error>], [CheckedContinuation<Welcome, any Error>], [SubscriptionEntry])? in
            if s.isClosed { return nil }
            let connection = s.connection
            s.phase = .closed
            defer {
                s.connectionWaiters.removeAll()
                s.connectWaiters.removeAll()
                s.subscriptions.removeAll()
                s.runTask = nil
                s.connectTask = nil
            }
            return (connection, s.runTask, s.connectTask, s.requests.takeAll(), Array(s.connectionWaiters.values), s.connectWaiters,
                    Array(s.subscriptions.values))
        }
        guard let (connection, runTask, connectTask, requests, connectionWaiters, connectWaiters, subscriptions) = taken else { return }
        for waiter in requests { waiter.fail(BrokerClientError.closed) }
        for waiter in connectionWaiters { waiter.resume(throwing: BrokerClientError.closed) }
        for waiter in connectWaiters { waiter.resume(throwing: BrokerClientError.closed) }
        for entry in subscriptions { entry.continuation.finish() }
        guard let runTask else { return }
        if let connection { connection.send(.close) }
        // Give the closing handshake a moment, then stop whatever is left.
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await runTask.value }
            group.addTask { try? await Task.sleep(for: .seconds(2)) }
            await group.next()
            runTask.cancel()
            connectTask?.cancel()
            group.cancelAll()
        }
    }
}

/// The broker's acknowledgement of a publish.
public struct PublishAck: Sendable, Equatable {
    /// The journal offset, present when the publish was retained.
    public var offset: UInt64?

    public init(offset: UInt64? = nil) { self.offset = offset }
}

extension Waiter {
    func fail(_ error: any Error) {
        switch self {
        case .reply(let continuation): continuation.resume(throwing: error)
        case .subscribe(_, let continuation): continuation?.resume(throwing: error)
        }
    }
}
