import BrokerProtocol

/// What the journal keeps. Limits apply in the background, so a topic can briefly hold a few more
/// messages than its limit, and the journal a little more than `maxBytes`.
public struct RetentionPolicy: Sendable, Equatable {
    /// Limits for the topics matching one filter, overriding the defaults they set (nil keeps the
    /// default).
    public struct Override: Sendable, Equatable {
        public var filter: String
        public var maxMessagesPerTopic: Int?
        public var maxAge: Duration?

        public init(filter: String, maxMessagesPerTopic: Int? = nil, maxAge: Duration? = nil) {
            self.filter = filter
            self.maxMessagesPerTopic = maxMessagesPerTopic
            self.maxAge = maxAge
        }
    }

    /// The limits that apply to one topic.
    public struct Limits: Sendable, Equatable {
        public var maxMessagesPerTopic: Int
        public var maxAge: Duration
    }

    /// Messages kept per topic, newest first (default 1,000).
    public var maxMessagesPerTopic: Int
    /// Messages older than this are removed (default 7 days).
    public var maxAge: Duration
    /// Journal-wide budget for the database on disk, the oldest messages going first (default
    /// 1 GiB): SQLite's pages in use, every table and index included, not only payloads (see
    /// `Pruner`). The WAL is not counted.
    public var maxBytes: Int64
    /// Per-filter limits; the first override whose filter matches a topic wins.
    public var overrides: [Override]

    public init(
        maxMessagesPerTopic: Int = 1_000,
        maxAge: Duration = .seconds(7 * 24 * 3_600),
        maxBytes: Int64 = 1 << 30,
        overrides: [Override] = []
    ) {
        self.maxMessagesPerTopic = maxMessagesPerTopic
        self.maxAge = maxAge
        self.maxBytes = maxBytes
        self.overrides = overrides
    }

    /// The limits for `topic`: the first matching override's, completed with the defaults.
    public func limits(for topic: String) -> Limits {
        var limits = Limits(maxMessagesPerTopic: maxMessagesPerTopic, maxAge: maxAge)
        if let override = overrides.first(where: { Topic.matches(filter: $0.filter, name: topic) }) {
            if let count = override.maxMessagesPerTopic { limits.maxMessagesPerTopic = count }
            if let age = override.maxAge { limits.maxAge = age }
        }
        return limits
    }

    /// The shortest age limit any topic can have: nothing younger can expire.
    var shortestMaxAge: Duration {
        overrides.compactMap(\.maxAge).reduce(maxAge, min)
    }
}

extension Duration {
    /// Whole milliseconds, saturating.
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        let (ms, overflow) = seconds.multipliedReportingOverflow(by: 1_000)
        return overflow ? (seconds < 0 ? .min : .max) : ms.addingReportingOverflow(attoseconds / 1_000_000_000_000_000).partialValue
    }
}
