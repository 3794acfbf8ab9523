import BrokerProtocol

/// The bookkeeping that lets a subscription resume after a reconnect without losing or doubling
/// retained messages.
///
/// - A subscription *wants retained messages* when it asked for replay: `history` > 0 (or left at
///   the broker's default of 1) or `since` given. Only those resume with `since`; a live-only
///   subscription (`history: 0`) simply subscribes again and misses what was published while the
///   connection was down.
/// - Offsets are remembered per concrete topic: within one topic they strictly increase, while a
///   `history` replay over a wildcard interleaves topics, so one per-subscription maximum cannot
///   tell a duplicate from a replayed message of another topic. A delivery whose offset is not
///   above the last one seen on its topic is a duplicate and is dropped.
/// - The resume point is the highest offset seen on any topic (offsets are broker-wide), in the
///   epoch it came from. If no offset has been seen yet (nothing was retained on the matching
///   topics when we subscribed), the resume point is `since: 0` in the epoch of the subscribe:
///   everything retained since then is new to us.
/// - When the broker's epoch changes, the remembered offsets mean nothing any more: the resume
///   request still names the old epoch (so the broker answers `recovered: false` and replays the
///   current state as `history` says) and the per-topic offsets are forgotten.
public struct ResumeState: Sendable, Equatable {
    /// The filter subscribed to.
    public let filter: String
    /// `history` as the user asked (nil: the broker's default, 1).
    public let history: Int?
    /// `since` as the user asked (forgotten when the epoch changes).
    public private(set) var initialSince: UInt64?
    /// `epoch` as the user asked, sent with the first subscribe only.
    public let requestedEpoch: String?
    /// The journal epoch the offsets below belong to ("" or nil: unknown).
    public private(set) var epoch: String?
    /// Highest offset seen on any topic, in `epoch`.
    public private(set) var lastOffset: UInt64?
    /// Last offset seen per concrete topic, in `epoch`.
    public private(set) var topicOffsets: [String: UInt64] = [:]

    /// - Parameters:
    ///   - requestedEpoch: the epoch the caller's `since` refers to, if it knows it.
    ///   - currentEpoch: the epoch of the connection the subscription is made on.
    public init(filter: String, history: Int?, since: UInt64?, requestedEpoch: String? = nil, currentEpoch: String?) {
        self.filter = filter
        self.history = history
        self.initialSince = since
        self.requestedEpoch = requestedEpoch
        self.epoch = currentEpoch.flatMap { $0.isEmpty ? nil : $0 }
        self.wantsRetained = since != nil || (history ?? 1) > 0
    }

    /// Whether the subscription asked for retained messages (and so resumes with `since`).
    public let wantsRetained: Bool

    /// The request of the first subscribe.
    public var initialRequest: SubscribeRequest {
        SubscribeRequest(filter: filter, history: history ?? 1, since: initialSince, epoch: initialSince == nil ? nil : requestedEpoch)
    }

    /// Records a delivery's offset; returns false when it is a duplicate to drop.
    public mutating func accept(topic: String, offset: UInt64?) -> Bool {
        guard let offset else { return true }
        if let last = topicOffsets[topic], offset <= last { return false }
        topicOffsets[topic] = offset
        if offset > (lastOffset ?? 0) { lastOffset = offset }
        return true
    }

    /// The point a resume starts from: `since` to send (nil: no resume, subscribe as new).
    public var resumeSince: UInt64? {
        guard wantsRetained else { return nil }
        switch (lastOffset, initialSince) {
        case let (last?, since?): return max(last, since)
        case let (last?, nil): return last
        case let (nil, since?): return since
        case (nil, nil): return 0
        }
    }

    /// Builds the subscribe request for a new connection whose welcome announced `currentEpoch`,
    /// and moves the bookkeeping to that epoch (forgetting offsets if it changed).
    public mutating func resubscribeRequest(currentEpoch: String?) -> SubscribeRequest {
        let current = currentEpoch.flatMap { $0.isEmpty ? nil : $0 }
        var request = SubscribeRequest(filter: filter, history: history ?? 1)
        if let since = resumeSince {
            request.since = since
            request.epoch = epoch
        }
        if let current, current != epoch {
            topicOffsets.removeAll()
            lastOffset = nil
            initialSince = nil
            epoch = current
        }
        return request
    }
}

extension ResumeState {
    /// Called when the first subscribe goes out on a connection whose welcome announced
    /// `currentEpoch`: offsets delivered from now on belong to that epoch.
    mutating func begin(currentEpoch: String?) {
        epoch = currentEpoch.flatMap { $0.isEmpty ? nil : $0 }
    }
}
