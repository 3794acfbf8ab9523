import Atomics
import BrokerJournal
import BrokerProtocol
import Foundation
import NIOCore

extension WebSocketConnection {
    /// Most requests a replay may hold back before the connection stops reading from its socket.
    static let maxDeferredRequests = 1_024

    func serve(_ parsed: Result<ControlRequest, RequestError>) {
        switch parsed {
        case .success(let request): handle(request)
        case .failure(let error): sendError(error)
        }
    }

    func deferRequest(_ parsed: Result<ControlRequest, RequestError>) {
        deferredRequests.append(parsed)
        if deferredRequests.count == Self.maxDeferredRequests {
            pauseReading(.replayBacklog)
        }
    }

    /// Serves the requests a replay held back, until one of them starts another replay.
    func serveDeferredRequests() {
        while lifecycle.phase == .open, let next = deferredRequests.popFirst() {
            serve(next)
        }
        if deferredRequests.count < Self.maxDeferredRequests, lifecycle.isOpen {
            resumeReading(.replayBacklog)
        }
    }

    func handle(_ request: ControlRequest) {
        switch request.request {
        case .ping:
            sendControl { ServerMessageEncoder.pong(id: request.id, into: &$0) }
        case .publish(let topic, let payload, let isBinary, let retain):
            guard identity.permissions.mayPublish(to: topic) else {
                sendError(RequestError(.forbidden, "this token may not publish to \(topic)", id: request.id))
                return
            }
            if publishLimiter != nil {
                let allowed = publishLimiter!.take(now: eventLoop.now)
                guard allowed else {
                    sendError(RequestError(
                        .rateLimited, "over the publish rate of \(publishLimiter!.rate) messages per second; dropped",
                        id: request.id))
                    return
                }
            }
            publish(topic: topic, payload: payload, isBinary: isBinary, retain: retain, id: request.id)
        case .subscribe(let subscribe):
            guard identity.permissions.maySubscribe(to: subscribe.filter) else {
                sendError(RequestError(.forbidden, "this token may not subscribe to \(subscribe.filter)", id: request.id))
                return
            }
            self.subscribe(subscribe, id: request.id)
        case .unsubscribe(let filter):
            unsubscribe(filter, id: request.id)
        case .refresh(let token):
            refresh(token: token, id: request.id)
        }
    }

    // MARK: Tokens

    /// `refresh`: the new token replaces the old one if it is valid and names the same client;
    /// subscriptions it no longer covers end (`unsubscribed` with reason `forbidden`).
    func refresh(token: String, id: RequestID?) {
        guard let authenticator else {
            sendError(RequestError(.unauthorized, "this broker does not accept tokens", id: id))
            return
        }
        let renewed: Identity
        switch authenticator.authenticate(credential: token) {
        case .success(let identity): renewed = identity
        case .failure(let refusal):
            sendError(RequestError(.unauthorized, "token refused: \(refusal.reason)", id: id))
            return
        }
        guard renewed.client == identity.client else {
            sendError(RequestError(.unauthorized, "the new token must carry the same sub", id: id))
            return
        }
        identity = renewed
        sendControl { ServerMessageEncoder.refreshed(exp: renewed.expiresAt, id: id, into: &$0) }
        for key in filters.sorted(by: { $0.text.utf8.lexicographicallyPrecedes($1.text.utf8) }) {
            let filter = String(key.text)
            guard !renewed.permissions.maySubscribe(to: filter) else { continue }
            filters.remove(key)
            shard.unsubscribe(self, from: filter)
            sendControl { ServerMessageEncoder.unsubscribed(topic: filter, id: nil, reason: "forbidden", into: &$0) }
        }
        armExpiryTimer()
    }

    /// Schedules the end of the connection at its token's `exp`, on the loop's clock.
    func armExpiryTimer() {
        expiryTimer?.cancel()
        expiryTimer = nil
        guard let exp = identity.expiresAt, lifecycle.isOpen else { return }
        let remaining = Double(exp) - Date().timeIntervalSince1970
        let delay = TimeAmount.nanoseconds(Int64(max(0, min(remaining, 1e9)) * 1e9))
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        expiryTimer = eventLoop.scheduleTask(in: delay) { connection.value.tokenExpired() }
    }

    private func tokenExpired() {
        expiryTimer = nil
        guard lifecycle.isOpen else { return }
        broker.logger.info("closing connection: token expired", metadata: ["session": "\(sessionID)"])
        sendError(RequestError(.tokenExpired, "the token expired; connect again with a fresh one"))
        close(.tokenExpired)
    }

    // MARK: Publish

    func publish(topic: String, payload: ByteBuffer, isBinary: Bool, retain: Bool, id: RequestID?) {
        shard.counters.published(isBinary: isBinary, retained: retain, bytes: payload.readableBytes)
        traffic.received(payload.readableBytes)
        if !retain { broker.broadcastToCluster(topic: topic, payload: payload, isBinary: isBinary) }
        if !retain && journalRequestsInFlight == 0 {
            // The common case: fan out from here, at once.
            broker.fanOut(OutboundMessage(
                topic: topic, payload: payload, isBinary: isBinary, offset: nil,
                compressor: broker.sharedFrameCompressor(on: shard), allocator: allocator),
                from: shard)
            if let id { sendControl { ServerMessageEncoder.ack(id: id, offset: nil, into: &$0) } }
            return
        }
        journalRequestsInFlight += 1
        if retain {
            // Journal backpressure: past either bound, stop reading from this connection until
            // the writer has committed some (journalRequestCompleted). No error, nothing lost.
            retainedInJournal += 1
            let held = RetainedPublication.heldBytes(topic: topic, payloadBytes: payload.readableBytes)
            let total = broker.pendingRetainedBytes.wrappingIncrementThenLoad(by: held, ordering: .relaxed)
            let configuration = broker.configuration
            if retainedInJournal >= configuration.maxPendingRetained || total >= configuration.maxPendingRetainedBytes {
                pauseReading(.journalBacklog)
            }
            // The journal completes appends on its writer, in the order requested: the outbox
            // fans the message out from there so every loop receives retained messages in offset
            // order; the ack follows after the fan-out (JournalOutbox.swift).
            broker.publishRetained(
                topic: topic, payload: payload, isBinary: isBinary,
                waiter: .publish(NIOLoopBound(self, eventLoop: eventLoop), id), shardPosition: shard.position,
                allocator: allocator)
        } else {
            // A retained publish of ours is still being committed: queue behind it on the writer.
            let message = OutboundMessage(
                topic: topic, payload: payload, isBinary: isBinary, offset: nil,
                compressor: broker.sharedFrameCompressor(on: shard), allocator: allocator)
            broker.publishLiveAfterJournal(
                message, waiter: .publish(NIOLoopBound(self, eventLoop: eventLoop), id), shardPosition: shard.position)
        }
    }

    /// A publish that went through the journal writer has been fanned out (or failed).
    /// `retainedBytes`: the publication's `heldBytes` for a retained publish, nil for a live one.
    func journalRequestCompleted(_ result: Result<UInt64?, JournalError>, id: RequestID?, retainedBytes: Int?) {
        journalRequestsInFlight -= 1
        if let retainedBytes {
            retainedInJournal -= 1
            let total = broker.pendingRetainedBytes.wrappingDecrementThenLoad(by: retainedBytes, ordering: .relaxed)
            // Resume under both bounds; or with nothing of ours left in the journal, whatever the
            // total (no later completion would wake us: the overshoot is one read at most).
            let configuration = broker.configuration
            if readPauses.contains(.journalBacklog), retainedInJournal < configuration.maxPendingRetained,
                total < configuration.maxPendingRetainedBytes || retainedInJournal == 0
            {
                resumeReading(.journalBacklog)
            }
        }
        switch result {
        case .success(let offset):
            if let id { sendControl { ServerMessageEncoder.ack(id: id, offset: offset, into: &$0) } }
        case .failure(let error):
            broker.logger.error("journal append failed", metadata: ["session": "\(sessionID)", "error": "\(error)"])
            sendError(RequestError(.internal, "the message could not be stored", id: id))
        }
    }

    // MARK: Subscribe

    func subscribe(_ request: SubscribeRequest, id: RequestID?) {
        let filter = request.filter
        if !filters.contains(BytewiseKey(filter)) {
            guard filters.count < maxSubscriptions else {
                sendError(RequestError(
                    .tooManySubscriptions, "at most \(maxSubscriptions) subscriptions per connection", id: id))
                return
            }
            filters.insert(BytewiseKey(filter))
            shard.subscribe(self, to: filter)
        }

        // Decide what to replay (PROTOCOL.md "Subscribe replay").
        var selection: ReplaySelection?
        var recovered: Bool?
        if let since = request.since {
            if request.epoch == nil || request.epoch == broker.journal.epoch {
                selection = .since(since)
            } else {
                // Offsets from another epoch mean nothing: give the current state instead.
                recovered = false
                if request.history > 0 { selection = .history(request.history) }
            }
        } else if request.history > 0 {
            selection = .history(request.history)
        }

        guard let selection else {
            sendControl { ServerMessageEncoder.subscribed(topic: filter, id: id, recovered: recovered, into: &$0) }
            return
        }
        startReplay(ReplayJob(filter: filter, id: id, selection: selection, recovered: recovered))
    }

    func unsubscribe(_ filter: String, id: RequestID?) {
        if filters.remove(BytewiseKey(filter)) != nil {
            shard.unsubscribe(self, from: filter)
        }
        sendControl { ServerMessageEncoder.unsubscribed(topic: filter, id: id, into: &$0) }
    }
}
