import BrokerJournal
import BrokerProtocol
import NIOCore

/// A subscription's replay of retained messages, from the journal snapshot to the hand-over
/// to live delivery.
struct ReplayJob {
    let filter: String
    let id: RequestID?
    let selection: ReplaySelection
    /// Known before reading (false after an epoch mismatch); otherwise decided from pruning.
    var recovered: Bool?
    /// High-water mark of the journal snapshot the replay reads up to.
    var upTo: UInt64 = 0
    /// Offset of the last record replayed (the next page starts after it).
    var cursor: UInt64 = 0
    var cancelled = false

    init(filter: String, id: RequestID?, selection: ReplaySelection, recovered: Bool?) {
        self.filter = filter
        self.id = id
        self.selection = selection
        self.recovered = recovered
        if case .since(let since) = selection { cursor = since }
    }
}

/// Replay and live delivery meet without gap or duplicate this way:
/// 1. the subscription is registered first, and from then on live messages for this connection
///    are held back;
/// 2. the journal snapshot is taken in order with its append completions, so by the time its
///    high-water mark H reaches this loop, every retained message up to H has already reached
///    this loop (and was held back) and every later one arrives after;
/// 3. the replay reads matching records up to H, page by page, pacing itself on the socket;
/// 4. then the held-back messages are written, except retained ones up to H that the replayed
///    filter covers (the replay was their delivery) and no other filter of this connection wants.
extension WebSocketConnection {
    func startReplay() {
        guard state == .open, let job = replays.first else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let eventLoop = self.eventLoop
        let filter = job.filter
        broker.journal.snapshot { highWater in
            eventLoop.execute { connection.value.replaySnapshotTaken(highWater, filter: filter) }
        }
    }

    private func replaySnapshotTaken(_ highWater: UInt64, filter: String) {
        guard state == .open, var job = replays.first, job.filter == filter else { return }
        if job.cancelled {
            finishReplay()
            return
        }
        job.upTo = highWater
        replays[0] = job
        if job.recovered == nil, case .since(let since) = job.selection {
            broker.journal.prunedAfter(since, filter: filter, on: eventLoop).assumeIsolated().whenComplete { result in
                guard self.state == .open, var job = self.replays.first, job.filter == filter else { return }
                job.recovered = (try? result.get()).map { !$0 } ?? false
                self.replays[0] = job
                self.sendSubscribed(job)
                self.readNextReplayPage()
            }
        } else {
            sendSubscribed(job)
            readNextReplayPage()
        }
    }

    private func sendSubscribed(_ job: ReplayJob) {
        // `recovered` is set only when the request had `since`.
        sendControl { ServerMessageEncoder.subscribed(topic: job.filter, id: job.id, recovered: job.recovered, into: &$0) }
    }

    func readNextReplayPage() {
        guard state == .open, let job = replays.first else { return }
        if job.cancelled {
            finishReplay()
            return
        }
        let query = ReplayQuery(
            filter: job.filter, selection: job.selection, after: job.cursor, upTo: job.upTo,
            limit: broker.configuration.replayPageSize)
        broker.journal.replayPage(query, on: eventLoop).assumeIsolated().whenComplete { result in
            self.replayPageRead(result, filter: job.filter)
        }
    }

    private func replayPageRead(_ result: Result<ReplayPage, any Error>, filter: String) {
        guard state == .open, var job = replays.first, job.filter == filter else { return }
        switch result {
        case .failure(let error):
            broker.logger.error("replay failed", metadata: ["session": "\(sessionID)", "filter": "\(filter)", "error": "\(error)"])
            sendError(RequestError(.internal, "replay of retained messages failed", id: job.id))
            finishReplay()
        case .success(let page):
            for record in page.records {
                write(OutboundMessage.encodeFrame(
                    topic: record.topic, payload: record.payload, isBinary: record.isBinary,
                    offset: record.offset, replay: true, allocator: allocator))
                job.cursor = record.offset
            }
            replays[0] = job
            if page.isLast || page.records.isEmpty || job.cancelled {
                finishReplay()
            } else if context.channel.isWritable {
                readNextReplayPage()
            } else {
                flushIfNeeded()
                replayAwaitsWritability = true
            }
        }
    }

    /// Ends the running replay, releases what was held back and starts the next replay.
    private func finishReplay() {
        guard let job = replays.popFirst() else { return }
        replayAwaitsWritability = false
        if replays.isEmpty {
            let held = heldBack
            heldBack.removeAll()
            heldBackBytes = 0
            for message in held {
                if let offset = message.offset, offset <= job.upTo, !job.cancelled,
                    Topic.matches(filter: job.filter, name: message.topic),
                    !matchesOtherFilter(message.topic, excluding: job.filter)
                {
                    continue  // delivered by the replay
                }
                write(message.frame)
            }
        } else {
            // The next replay keeps holding back; drop only what this one covered.
            heldBack.removeAll { message in
                guard let offset = message.offset, offset <= job.upTo, !job.cancelled else { return false }
                return Topic.matches(filter: job.filter, name: message.topic)
                    && !matchesOtherFilter(message.topic, excluding: job.filter)
            }
            heldBackBytes = heldBack.reduce(0) { $0 + $1.frame.readableBytes }
            startReplay()
        }
        if !context.channel.isWritable, state == .open, replays.isEmpty {
            close(code: 1008, reason: "slow consumer")
        }
    }

    func cancelReplays(of filter: String) {
        for index in replays.indices where replays[index].filter == filter {
            replays[index].cancelled = true
        }
        // Queued ones that never started can go at once; the running one ends at its next step.
        if replays.count > 1 {
            let running = replays.removeFirst()
            replays.removeAll { $0.cancelled }
            replays.prepend(running)
        }
    }
}
