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
    /// Which topics match, learned on one page and kept for the next (wildcard filters only:
    /// an exact filter has one topic, looked up once per page).
    let topicCache: ReplayTopicCache?

    init(filter: String, id: RequestID?, selection: ReplaySelection, recovered: Bool?) {
        self.filter = filter
        self.id = id
        self.selection = selection
        self.recovered = recovered
        self.topicCache = Topic.isWildcard(filter) ? ReplayTopicCache() : nil
        if case .since(let since) = selection { cursor = since }
    }
}

/// Replay and live delivery meet without gap or duplicate this way:
/// 1. the subscription is registered first, and from then on live messages for this connection
///    are held back (and later requests wait, so replies keep the order of requests);
/// 2. the journal snapshot is taken in order with its append completions, so by the time its
///    high-water mark H reaches this loop, every retained message up to H has already reached
///    this loop (and was held back) and every later one arrives after;
/// 3. the replay reads matching records up to H, page by page, pacing itself on the socket;
/// 4. then the held-back messages are written, except retained ones up to H on topics the
///    replayed filter matches: the replay answered for those. With `since` it delivered them;
///    with `history: N` it delivered the newest N, and an older one retained during the set-up
///    is superseded (delivering it after a newer replayed one would break per-topic offset order
///    and, if another filter of the connection also matched, deliver the topic twice).
extension WebSocketConnection {
    func startReplay(_ job: ReplayJob) {
        guard lifecycle.startReplay(job) else { return }
        let connection = NIOLoopBound(self, eventLoop: eventLoop)
        let outbox = broker.outbox
        let shardIndex = shard.position
        // Through the outbox, behind every retained message the writer handed this loop first.
        broker.journal.snapshot { highWater in
            outbox.complete(onShard: shardIndex, JournalCompletion(.replaySnapshot(connection), .success(highWater)))
        }
    }

    /// The journal's high-water mark for this replay has reached the loop (a snapshot does not fail).
    func replaySnapshotTaken(_ result: Result<UInt64?, JournalError>) {
        lifecycle.updateReplay { $0.upTo = (try? result.get()).flatMap { $0 } ?? 0 }
        guard let job = replay else { return }
        guard job.recovered == nil, case .since(let since) = job.selection else {
            sendSubscribed(job)
            readNextReplayPage()
            return
        }
        broker.journal.prunedAfter(since, filter: job.filter, on: eventLoop).assumeIsolated().whenComplete { result in
            self.lifecycle.updateReplay { $0.recovered = (try? result.get()).map { !$0 } ?? false }
            guard let job = self.replay else { return }
            self.sendSubscribed(job)
            self.readNextReplayPage()
        }
    }

    private func sendSubscribed(_ job: ReplayJob) {
        // `recovered` is set only when the request had `since`.
        sendControl { ServerMessageEncoder.subscribed(topic: job.filter, id: job.id, recovered: job.recovered, into: &$0) }
    }

    func readNextReplayPage() {
        guard let job = replay else { return }
        let query = ReplayQuery(
            filter: job.filter, selection: job.selection, after: job.cursor, upTo: job.upTo,
            limit: broker.configuration.replayPageSize, topicCache: job.topicCache)
        broker.journal.replayPage(query, on: eventLoop).assumeIsolated().whenComplete { result in
            self.replayPageRead(result)
        }
    }

    private func replayPageRead(_ result: Result<ReplayPage, any Error>) {
        guard let job = replay else { return }
        switch result {
        case .failure(let error):
            broker.logger.error("replay failed", metadata: ["session": "\(sessionID)", "filter": "\(job.filter)", "error": "\(error)"])
            sendError(RequestError(.internal, "replay of retained messages failed", id: job.id))
            finishReplay()
        case .success(let page):
            writeReplayed(page.records)
            if let last = page.records.last { lifecycle.updateReplay { $0.cursor = last.offset } }
            shard.counters.replayedMessages &+= page.records.count
            switch lifecycle.pageWritten(isLast: page.isLast || page.records.isEmpty, writable: isWritable) {
            case .readNextPage: readNextReplayPage()
            case .awaitWritability: flushAndAwaitWritability()
            case .finish: finishReplay()
            }
        }
    }

    /// Writes a page's records: as one buffer of frames (one allocation and one write for the
    /// page), or frame by frame where each is compressed on its own.
    private func writeReplayed(_ records: [RetainedRecord]) {
        guard deflate == nil else {
            for record in records {
                let frame = OutboundMessage.encodeFrame(
                    topic: record.topic, payload: record.payload, isBinary: record.isBinary,
                    offset: record.offset, replay: true, allocator: allocator)
                traffic.sent(frame.readableBytes)
                writeData(frame)
            }
            return
        }
        guard !records.isEmpty else { return }
        var capacity = 0
        for record in records {
            // A header of at most 10 bytes in front of each body.
            capacity += 10 + OutboundMessage.bodyBytesEstimate(topic: record.topic, payload: record.payload)
        }
        var frames = allocator.buffer(capacity: capacity)
        for record in records {
            OutboundMessage.appendFrame(
                topic: record.topic, payload: record.payload, isBinary: record.isBinary,
                offset: record.offset, replay: true, to: &frames)
        }
        traffic.sent(records.count, bytes: frames.readableBytes)
        write(frames)
    }

    /// Ends the replay, releases what was held back and serves the requests that waited. If the
    /// replay left more than the send limit queued, the hand-over waits until it drains (live
    /// messages stay held back meanwhile, within the same limit).
    func finishReplay() {
        switch lifecycle.handOver(writable: isWritable) {
        case .nothing:
            return
        case .awaitWritability:
            flushAndAwaitWritability()
        case .handOver(let job):
            let held = heldBack
            heldBack.removeAll()
            heldBackBytes = 0
            for message in held {
                if let offset = message.offset, offset <= job.upTo, Topic.matches(filter: job.filter, name: message.topic) {
                    continue  // the replay answered for it
                }
                traffic.sent(message.frame.readableBytes)
                write(frame(of: message))
            }
            serveDeferredRequests()
        }
    }
}
