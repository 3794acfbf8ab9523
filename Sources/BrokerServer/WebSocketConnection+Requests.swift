import BrokerJournal
import BrokerProtocol
import NIOCore

/// A publish held back behind an uncommitted retained publish of the same connection.
enum QueuedPublish {
    /// A retained publish waiting for its journal commit; `id` is acked then.
    case retained(id: RequestID?)
    /// A live publish to fan out once everything before it has gone.
    case live(OutboundMessage, id: RequestID?)
}

extension WebSocketConnection {
    func handle(_ request: ControlRequest) {
        switch request.request {
        case .ping:
            sendControl { ServerMessageEncoder.pong(id: request.id, into: &$0) }
        case .publish(let topic, let payload, let isBinary, let retain):
            publish(topic: topic, payload: payload, isBinary: isBinary, retain: retain, id: request.id)
        case .subscribe(let subscribe):
            self.subscribe(subscribe, id: request.id)
        case .unsubscribe(let filter):
            unsubscribe(filter, id: request.id)
        }
    }

    // MARK: Publish

    func publish(topic: String, payload: ByteBuffer, isBinary: Bool, retain: Bool, id: RequestID?) {
        guard retain else {
            let message = OutboundMessage(topic: topic, payload: payload, isBinary: isBinary, offset: nil, allocator: allocator)
            if publishQueue.isEmpty {
                broker.fanOut(message)
                if let id { sendControl { ServerMessageEncoder.ack(id: id, offset: nil, into: &$0) } }
            } else {
                publishQueue.append(.live(message, id: id))
            }
            return
        }
        publishQueue.append(.retained(id: id))
        // The journal runs the completion on its writer, in offset order: fan out from there so
        // every loop receives retained messages in offset order, then report back to this loop.
        let broker = self.broker
        let allocator = self.allocator
        let eventLoop = self.eventLoop
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let entry = JournalEntry(topic: topic, payload: payload, isBinary: isBinary)
        broker.journal.append(entry) { result in
            if case .success(let offset) = result {
                broker.fanOut(OutboundMessage(topic: topic, payload: payload, isBinary: isBinary, offset: offset, allocator: allocator))
            }
            eventLoop.execute { connection.value.retainedPublishCompleted(result) }
        }
    }

    private func retainedPublishCompleted(_ result: Result<UInt64, JournalError>) {
        guard case .retained(let id)? = publishQueue.popFirst() else {
            assertionFailure("journal completion without a queued retained publish")
            return
        }
        switch result {
        case .success(let offset):
            if let id { sendControl { ServerMessageEncoder.ack(id: id, offset: offset, into: &$0) } }
        case .failure(let error):
            broker.logger.error("journal append failed", metadata: ["session": "\(sessionID)", "error": "\(error)"])
            sendError(RequestError(.internal, "the message could not be stored", id: id))
        }
        while case .live(let message, let id)? = publishQueue.first {
            publishQueue.removeFirst()
            broker.fanOut(message)
            if let id { sendControl { ServerMessageEncoder.ack(id: id, offset: nil, into: &$0) } }
        }
    }

    // MARK: Subscribe

    func subscribe(_ request: SubscribeRequest, id: RequestID?) {
        let filter = request.filter
        if !filters.contains(filter) {
            guard filters.count < broker.configuration.maxSubscriptionsPerConnection else {
                sendError(RequestError(
                    .tooManySubscriptions,
                    "at most \(broker.configuration.maxSubscriptionsPerConnection) subscriptions per connection", id: id))
                return
            }
            filters.insert(filter)
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
        replays.append(ReplayJob(filter: filter, id: id, selection: selection, recovered: recovered))
        if replays.count == 1 { startReplay() }
    }

    func unsubscribe(_ filter: String, id: RequestID?) {
        if filters.remove(filter) != nil {
            shard.unsubscribe(self, from: filter)
            cancelReplays(of: filter)
        }
        sendControl { ServerMessageEncoder.unsubscribed(topic: filter, id: id, into: &$0) }
    }

    /// Whether `topic` matches one of this connection's filters other than `excluded`.
    func matchesOtherFilter(_ topic: String, excluding excluded: String) -> Bool {
        filters.contains { $0 != excluded && Topic.matches(filter: $0, name: topic) }
    }
}
