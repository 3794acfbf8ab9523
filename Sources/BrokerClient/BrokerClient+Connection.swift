import BrokerProtocol
import Foundation
import HTTPTypes
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOSSL
import NIOWebSocket
import WSClient
import WSCompression

/// The connection loop: connect, read, dispatch, reconnect.
extension BrokerClient {
    /// Connects, runs the connection until it ends, and reconnects with backoff until `close()`
    /// (or until the very first attempt fails, which `connect()` reports).
    func runLoop() async {
        var attempt = 0
        while true {
            var failure: (any Error)?
            var closeFrame: WebSocketCloseFrame?
            switch await attemptConnection() {
            case .success(let frame): closeFrame = frame
            case .failure(let error): failure = error
            }
            let reason = failure.map(Self.describe) ?? closeFrame.map(Self.describe) ?? "connection closed"
            guard let wasConnected = connectionEnded(failure: failure, reason: reason) else { return }
            if wasConnected {
                attempt = 0
                logger.info("broker connection lost: \(reason)")
                configuration.onEvent?(.disconnected(reason: reason))
            } else {
                logger.debug("broker reconnect failed: \(reason)")
            }
            let delay = configuration.backoff.delay(attempt: attempt)
            attempt += 1
            configuration.onEvent?(.reconnecting(attempt: attempt, delay: delay))
            try? await Task.sleep(for: delay)
            if Task.isCancelled || state.withLockedValue({ $0.isClosed }) { return }
        }
    }

    /// Runs one connection attempt to its end. Gives up (with `.timeout`) if no welcome arrived
    /// within the request timeout, even when the TCP connect or the upgrade stalls.
    private func attemptConnection() async -> Result<WebSocketCloseFrame?, any Error> {
        let attempt = ConnectAttempt()
        let timeout = configuration.requestTimeout
        return await withCheckedContinuation { continuation in
            let once = ResumeOnce<Result<WebSocketCloseFrame?, any Error>>(continuation)
            let connectTask = Task {
                do {
                    let token = try await self.configuration.tokenProvider?() ?? self.configuration.token
                    let frame = try await WebSocketClient.connect(
                        url: self.url, configuration: self.webSocketConfiguration(token: token),
                        tlsConfiguration: self.tlsConfiguration, logger: self.logger
                    ) { inbound, outbound, _ in
                        if attempt.isAbandoned { return }
                        try await self.runConnection(inbound: inbound, outbound: outbound, attempt: attempt)
                    }
                    once.resume(.success(frame))
                } catch {
                    once.resume(.failure(error))
                }
            }
            state.withLockedValue { $0.connectTask = connectTask }
            Task {
                try? await Task.sleep(for: timeout)
                if attempt.abandonIfNotWelcomed() {
                    connectTask.cancel()
                    once.resume(.failure(BrokerClientError.timeout))
                }
            }
        }
    }

    /// TLS for wss://: nil (WSClient's default: the system's trust store) unless the configuration
    /// names other trust roots, a client certificate or no verification.
    var tlsConfiguration: TLSConfiguration? {
        configuration.tlsConfiguration
    }

    func webSocketConfiguration(token: String?) -> WebSocketClientConfiguration {
        var headers = HTTPFields()
        if let token { headers[.authorization] = "Bearer \(token)" }
        return WebSocketClientConfiguration(
            maxFrameSize: configuration.maxMessageBytes,
            additionalHeaders: headers,
            extensions: configuration.compression
                ? [.perMessageDeflate(maxDecompressedFrameSize: configuration.maxMessageBytes)] : [],
            closeTimeout: .seconds(3),
            // Our own keep-alive instead (`Liveness`, in runConnection): any frame counts.
            autoPing: .disabled,
            validateUTF8: true)
    }

    private enum ConnectionTask: Sendable {
        case reader, writer, welcomeWatchdog, keepAlive
    }

    /// One connection: a reader (this task's child), a single writer draining the connection's
    /// queue, and a watchdog that gives up if no welcome arrives within the request timeout.
    func runConnection(inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter, attempt: ConnectAttempt) async throws {
        let (queue, queueContinuation) = AsyncStream.makeStream(of: Connection.Outbound.self)
        let generation = state.withLockedValue { s -> UInt64 in
            s.generation += 1
            return s.generation
        }
        let connection = Connection(generation: generation, queue: queueContinuation)
        let welcomed = NIOLockedValueBox(false)
        let liveness = NIOLockedValueBox(Liveness())
        defer { connection.finish() }
        try await withThrowingTaskGroup(of: ConnectionTask.self) { group in
            group.addTask {
                for await item in queue {
                    switch item {
                    case .text(let buffer):
                        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .text, data: buffer)))
                    case .binary(let buffer):
                        try await outbound.write(.custom(WebSocketFrame(fin: true, opcode: .binary, data: buffer)))
                    case .close:
                        try await outbound.close(.normalClosure, reason: nil)
                        return .writer
                    }
                }
                return .writer
            }
            group.addTask {
                try await Task.sleep(for: self.configuration.requestTimeout)
                if !welcomed.withLockedValue({ $0 }) {
                    throw BrokerClientError.protocolViolation("no welcome within \(self.configuration.requestTimeout)")
                }
                return .welcomeWatchdog
            }
            if let interval = configuration.keepAlive {
                group.addTask {
                    while true {
                        try await Task.sleep(for: interval)
                        switch liveness.withLockedValue({ $0.tick() }) {
                        case .none: break
                        case .sendPing: connection.send(.text(RequestEncoder.keepAlivePing))
                        case .giveUp: throw BrokerClientError.timeout  // two silent intervals
                        }
                    }
                }
            }
            group.addTask {
                for try await message in inbound.messages(maxSize: self.configuration.maxMessageBytes) {
                    liveness.withLockedValue { $0.heard() }
                    let isWelcomed = welcomed.withLockedValue { $0 }
                    switch message {
                    case .text(let text):
                        let parsed: ServerMessage
                        do {
                            parsed = try ServerMessage.parseText(ByteBuffer(string: text))
                        } catch {
                            self.logger.warning("ignoring a frame from the broker: \(error)")
                            continue
                        }
                        if isWelcomed {
                            self.handle(parsed)
                        } else {
                            guard case .welcome(let welcome) = parsed else {
                                throw BrokerClientError.protocolViolation("first frame is not a welcome")
                            }
                            guard welcome.protocolVersion == 1 else {
                                throw BrokerClientError.protocolViolation("broker speaks protocol \(welcome.protocolVersion), not 1")
                            }
                            guard attempt.markWelcomed() else { throw BrokerClientError.timeout }
                            welcomed.withLockedValue { $0 = true }
                            self.established(connection, welcome: welcome)
                        }
                    case .binary(let buffer):
                        guard isWelcomed else { throw BrokerClientError.protocolViolation("first frame is not a welcome") }
                        do {
                            self.dispatch(try BinaryCodec.decodeMessage(buffer))
                        } catch {
                            self.logger.warning("ignoring a binary frame from the broker: \(error)")
                        }
                    }
                }
                return .reader
            }
            while let finished = try await group.next() {
                if finished == .reader { break }
            }
            group.cancelAll()
        }
    }

    /// A welcome arrived: resubscribe live subscriptions, then release everyone waiting.
    func established(_ connection: Connection, welcome: Welcome) {
        let (connectWaiters, connectionWaiters) = state.withLockedValue { s in
            if s.isClosed { return ([CheckedContinuation<Welcome, any Error>](), [CheckedContinuation<Connection, any Error>]()) }
            s.phase = .connected(connection)
            s.welcome = welcome
            s.everConnected = true
            // Resubscribe before anything waiting goes out, in subscription order.
            for localID in s.subscriptions.keys.sorted() {
                guard var entry = s.subscriptions[localID], entry.active else { continue }
                let request = entry.resume.resubscribeRequest(currentEpoch: welcome.epoch)
                entry.sentSince = request.since
                s.subscriptions[localID] = entry
                let id = s.requests.register(.subscribe(localID: localID, nil))
                connection.send(.text(RequestEncoder.subscribe(id: id, request)))
            }
            defer {
                s.connectWaiters.removeAll()
                s.connectionWaiters.removeAll()
            }
            return (s.connectWaiters, Array(s.connectionWaiters.values))
        }
        logger.debug("connected to \(url): \(welcome.server), session \(welcome.session), epoch \(welcome.epoch)")
        configuration.onEvent?(.connected(welcome))
        for waiter in connectWaiters { waiter.resume(returning: welcome) }
        for waiter in connectionWaiters { waiter.resume(returning: connection) }
        if let exp = welcome.exp, configuration.tokenProvider != nil {
            Task { await self.keepTokenFresh(on: connection, expiresAt: exp) }
        }
    }

    /// While `connection` is the current one: `tokenRefreshMargin` before `exp`, asks the token
    /// provider for a new token and sends it as `refresh`; again for the new token's `exp`.
    func keepTokenFresh(on connection: Connection, expiresAt firstExp: Int64) async {
        guard let provider = configuration.tokenProvider else { return }
        var exp = firstExp
        while true {
            let remaining = Double(exp) - Date().timeIntervalSince1970
            let margin = Double(configuration.tokenRefreshMargin.components.seconds)
            // Half the lifetime left when it is shorter than twice the margin.
            let wait = max(1, min(remaining - margin, remaining / 2))
            try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
            guard state.withLockedValue({ $0.connection === connection }) else { return }
            do {
                let token = try await provider()
                let reply = try await request(deadline: .now + configuration.requestTimeout) { _, id in
                    .success(.text(RequestEncoder.refresh(id: id, token: token)))
                }
                guard case .refreshed(let next, _) = reply, let next else { return }  // no exp: nothing to renew
                exp = next
            } catch {
                logger.warning("token refresh failed: \(error); the connection ends at exp and reconnects")
                return
            }
        }
    }

    /// The connection ended. Returns nil when the run loop must stop (closed, or the first connect
    /// failed), else whether this connection had been established.
    func connectionEnded(failure: (any Error)?, reason: String) -> Bool? {
        let (stop, wasConnected, requests, connectWaiters) = state.withLockedValue { s in
            let wasConnected = s.connection != nil
            let requests = s.requests.takeAll()
            if s.isClosed { return (true, wasConnected, requests, [CheckedContinuation<Welcome, any Error>]()) }
            if !s.everConnected {
                s.phase = .idle
                s.runTask = nil
                defer { s.connectWaiters.removeAll() }
                let waiters = s.connectionWaiters.values
                s.connectionWaiters.removeAll()
                for waiter in waiters { waiter.resume(throwing: BrokerClientError.notConnected) }
                return (true, false, requests, s.connectWaiters)
            }
            s.phase = .reconnecting
            return (false, wasConnected, requests, [])
        }
        for waiter in requests { waiter.fail(BrokerClientError.connectionLost) }
        for waiter in connectWaiters { waiter.resume(throwing: BrokerClientError.cannotConnect(url: url, reason: reason)) }
        return stop ? nil : wasConnected
    }

    /// A reply or message from the broker.
    func handle(_ message: ServerMessage) {
        switch message {
        case .message(let delivery):
            dispatch(delivery)
        case .ack(let id, _):
            complete(id, message)
        case .pong(let id), .unsubscribed(_, let id), .refreshed(_, let id):
            if let id { complete(id, message) }
        case .subscriptionEnded(let topic, let reason):
            logger.warning("the broker ended the subscription to \(topic): \(reason)")
        case .subscribed(_, let id, let recovered):
            guard let id else { return }
            subscribed(id, message, recovered: recovered)
        case .error(let code, let text, let id):
            guard let id else {
                logger.warning("broker error: \(code): \(text)")
                return
            }
            failed(id, message, error: BrokerClientError.server(code: code, message: text))
        case .welcome:
            logger.warning("ignoring a second welcome from the broker")
        }
    }

    private func complete(_ id: RequestID, _ message: ServerMessage) {
        let waiter = state.withLockedValue { $0.requests.take(id) }
        switch waiter {
        case .reply(let continuation): continuation.resume(returning: message)
        case .subscribe(_, let continuation): continuation?.resume(returning: message)
        case nil: logger.debug("reply to an unknown request \(id)")
        }
    }

    private func subscribed(_ id: RequestID, _ message: ServerMessage, recovered: Bool?) {
        let (waiter, gap) = state.withLockedValue { s -> (Waiter?, (String, UInt64?)?) in
            let waiter = s.requests.take(id)
            guard case .subscribe(let localID, _) = waiter, var entry = s.subscriptions[localID] else { return (waiter, nil) }
            entry.active = true
            s.subscriptions[localID] = entry
            guard recovered == false else { return (waiter, nil) }
            entry.counters.box.withLockedValue { $0.gaps += 1 }
            return (waiter, (entry.resume.filter, entry.sentSince))
        }
        if let (filter, since) = gap {
            logger.info("subscription \(filter) resumed with a gap (recovered: false)")
            configuration.onEvent?(.gap(filter: filter, since: since))
        }
        switch waiter {
        case .reply(let continuation): continuation.resume(returning: message)
        case .subscribe(_, let continuation): continuation?.resume(returning: message)
        case nil: break
        }
    }

    private func failed(_ id: RequestID, _ message: ServerMessage, error: BrokerClientError) {
        let (waiter, ended) = state.withLockedValue { s -> (Waiter?, SubscriptionEntry?) in
            let waiter = s.requests.take(id)
            // A resubscribe the broker refused ends its subscription.
            if case .subscribe(let localID, nil) = waiter { return (waiter, s.subscriptions.removeValue(forKey: localID)) }
            return (waiter, nil)
        }
        if let ended {
            logger.warning("broker refused to resubscribe \(ended.resume.filter): \(error)")
            ended.continuation.finish(throwing: error)
            configuration.onEvent?(.subscriptionFailed(filter: ended.resume.filter, error: error))
        }
        switch waiter {
        case .reply(let continuation): continuation.resume(returning: message)
        case .subscribe(_, let continuation): continuation?.resume(returning: message)
        case nil: logger.debug("error reply to an unknown request \(id): \(error)")
        }
    }

    /// Hands a delivery to every local subscription whose filter matches (the broker sends one copy
    /// per connection). Replays go only to subscriptions that asked for retained messages;
    /// duplicates by offset are dropped per subscription.
    func dispatch(_ delivery: Delivery) {
        let drops = state.withLockedValue { s -> [(String, Int)] in
            var drops: [(String, Int)] = []
            for (localID, var entry) in s.subscriptions where Topic.matches(filter: entry.resume.filter, name: delivery.topic) {
                if delivery.replay && !entry.resume.wantsRetained { continue }
                guard entry.resume.accept(topic: delivery.topic, offset: delivery.offset) else { continue }
                if delivery.offset != nil { s.subscriptions[localID] = entry }
                if case .dropped = entry.continuation.yield(delivery) {
                    let count = entry.counters.box.withLockedValue { values -> Int in
                        values.dropped += 1
                        return values.dropped
                    }
                    drops.append((entry.resume.filter, count))
                }
            }
            return drops
        }
        for (filter, count) in drops {
            if count == 1 || count % 1000 == 0 { logger.warning("subscription \(filter) is not keeping up: \(count) messages dropped") }
            configuration.onEvent?(.dropped(filter: filter, count: count))
        }
    }
}
