import BrokerProtocol

/// One topic filter cut into levels once, so that matching a topic and checking coverage take
/// no splitting and no allocation per call.
struct CompiledFilter: Sendable, Hashable, CustomStringConvertible {
    enum Level: Sendable, Hashable {
        /// The level's UTF-8 bytes.
        case literal([UInt8])
        /// `+`: exactly one level.
        case one
        /// `#`: zero or more trailing levels (only last).
        case rest
    }

    let levels: [Level]
    let description: String

    /// `filter` must be a valid filter (`Topic.validateFilter`).
    init(_ filter: String) {
        description = filter
        levels = Topic.levels(of: filter).map { level in
            switch level {
            case "+": .one
            case "#": .rest
            default: .literal(Array(level.utf8))
            }
        }
    }

    /// Whether the concrete topic `name` matches, with PROTOCOL.md's rule that a filter whose
    /// first level is a wildcard does not match names starting with `$`. Walks the name's bytes
    /// once; no allocation for a native string.
    func matches(_ name: String) -> Bool {
        if let result = name.utf8.withContiguousStorageIfAvailable({ matches(bytes: $0) }) { return result }
        return Array(name.utf8).withUnsafeBufferPointer { matches(bytes: $0) }
    }

    private func matches(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if bytes.first == UInt8(ascii: "$") {
            switch levels.first {
            case .one?, .rest?: return false
            default: break
            }
        }
        var start = 0
        var index = 0
        while true {
            // The name's level at `start`: up to the next `/` or the end.
            var end = start
            while end < bytes.count, bytes[end] != UInt8(ascii: "/") { end += 1 }
            guard index < levels.count else { return false }  // the name has more levels
            switch levels[index] {
            case .rest:
                return true
            case .one:
                break
            case .literal(let literal):
                guard literal.count == end - start else { return false }
                var offset = 0
                while offset < literal.count {
                    if literal[offset] != bytes[start + offset] { return false }
                    offset += 1
                }
            }
            index += 1
            if end == bytes.count { break }
            start = end + 1
        }
        // The name has ended: the filter must end too, or go on with `#` (zero levels).
        if index == levels.count { return true }
        return index == levels.count - 1 && levels[index] == .rest
    }

    /// Whether every topic this filter can match is matched by `other` (this filter's language
    /// is a subset of `other`'s): `dash/+/cpu` ⊆ `dash/#`, `a/+` ⊆ `+/+`, `#` ⊄ `dash/#`.
    ///
    /// Level by level, with no choice to make: a `#` in `other` takes whatever is left; a `+` in
    /// `other` covers a `+` or a literal; a literal covers only the same literal; a `#` here is
    /// covered only by a `#` there (it matches names longer than any fixed filter, and the
    /// name that ends where the `#` starts). Two rules of topics make exceptions:
    /// - a name is never empty, so a first-level `#` here is `+/#` (it cannot match zero levels);
    /// - a wildcard at the first level does not match `$` names, so a filter whose first level is
    ///   a `$…` literal is covered only by a filter with that same literal first level.
    func isCovered(by other: CompiledFilter) -> Bool {
        var mine = levels[...]
        if mine.first == .rest { mine = [.one, .rest] }
        if case .literal(let first)? = mine.first, first.first == UInt8(ascii: "$") {
            guard other.levels.first == .literal(first) else { return false }
        }
        var theirs = other.levels[...]
        while let their = theirs.popFirst() {
            if their == .rest { return true }
            guard let level = mine.popFirst() else { return false }  // names here end sooner
            switch (level, their) {
            case (.rest, _): return false
            case (.one, .one): continue
            case (.one, .literal): return false
            case (.literal, .one): continue
            case (.literal(let a), .literal(let b)): if a != b { return false }
            case (_, .rest): return true
            }
        }
        return mine.isEmpty  // names here are longer than any `other` matches
    }
}

/// What one client may do: the topics it may publish to and the filters it may subscribe to.
/// Resolved once per connection (from its token) and checked per request; the common cases
/// (everything, nothing) cost one branch.
public struct Permissions: Sendable, Equatable {
    /// Everything, or a list of filters.
    enum Grant: Sendable, Equatable {
        case everything
        case filters([CompiledFilter])

        static let nothing = Grant.filters([])
    }

    var publish: Grant
    var subscribe: Grant

    /// Full permissions: the open broker, static client tokens and the API key.
    public static let everything = Permissions(publish: .everything, subscribe: .everything)
    public static let nothing = Permissions(publish: .nothing, subscribe: .nothing)

    init(publish: Grant, subscribe: Grant) {
        self.publish = publish
        self.subscribe = subscribe
    }

    /// Permissions from filter lists (each a valid v1 filter).
    public init(publish: [String], subscribe: [String]) {
        self.publish = .filters(publish.map(CompiledFilter.init))
        self.subscribe = .filters(subscribe.map(CompiledFilter.init))
    }

    public var isEverything: Bool { self == .everything }

    /// Whether a publish to the concrete topic `name` is allowed: it matches a publish filter.
    public func mayPublish(to name: String) -> Bool {
        switch publish {
        case .everything: return true
        case .filters(let filters):
            for filter in filters where filter.matches(name) { return true }
            return false
        }
    }

    /// Whether a subscription to `filter` is allowed: one subscribe filter covers it.
    public func maySubscribe(to filter: String) -> Bool {
        switch subscribe {
        case .everything: return true
        case .filters(let filters): return Self.covers(filters, filter)
        }
    }

    /// Whether `filter` (read, GET /api/retained) is covered by the publish filters
    /// (DELETE /api/retained clears what one may publish).
    public func mayClear(_ filter: String) -> Bool {
        switch publish {
        case .everything: return true
        case .filters(let filters): return Self.covers(filters, filter)
        }
    }

    static func covers(_ filters: [CompiledFilter], _ filter: String) -> Bool {
        guard !filters.isEmpty else { return false }
        let requested = CompiledFilter(filter)
        for granted in filters where requested.isCovered(by: granted) { return true }
        return false
    }

    /// The subscribe filters as written (for `broker token verify` and logs).
    var subscribeFilters: [String]? {
        if case .filters(let filters) = subscribe { return filters.map(\.description) }
        return nil
    }
}

