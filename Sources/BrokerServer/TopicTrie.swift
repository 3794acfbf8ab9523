import BrokerProtocol

/// A subscription index: topic filters in a trie keyed by level, so that matching a published
/// name walks only the branches that can match (its literal levels, `+` and `#`).
///
/// Levels are compared byte for byte, as PROTOCOL.md and MQTT compare topics: `café` written
/// precomposed and `cafe` + U+0301 are two topics, though Swift's `String` calls them equal.
///
/// Not thread-safe: each event loop owns one trie for its own connections, so the publish path
/// takes no lock. Subscribers are compared by identity.
///
/// `package`: the microbenchmarks (Benchmarks/TopicMatching) drive it directly.
package final class TopicTrie<Subscriber: AnyObject> {
    final class Node {
        var children: [BytewiseKey: Node] = [:]
        var plus: Node?
        /// Subscribers of the filter ending with `#` at this node.
        var hashSubscribers: [Subscriber] = []
        /// Subscribers of the filter ending exactly at this node.
        var subscribers: [Subscriber] = []

        var isEmpty: Bool {
            children.isEmpty && plus == nil && hashSubscribers.isEmpty && subscribers.isEmpty
        }
    }

    private let root = Node()
    package private(set) var count = 0

    package init() {}

    /// Adds `subscriber` under `filter` (a valid filter). Adding the same pair twice is the
    /// caller's mistake; the connection keeps its own set of filters to avoid it.
    package func insert(_ filter: String, _ subscriber: Subscriber) {
        var node = root
        for level in Topic.levels(of: filter) {
            if level == "#" {
                node.hashSubscribers.append(subscriber)
                count += 1
                return
            }
            if level == "+" {
                if node.plus == nil { node.plus = Node() }
                node = node.plus!
            } else if let child = node.children[BytewiseKey(level)] {
                node = child
            } else {
                let child = Node()
                node.children[BytewiseKey(level)] = child
                node = child
            }
        }
        node.subscribers.append(subscriber)
        count += 1
    }

    /// Removes `subscriber` from `filter`, pruning branches that became empty.
    @discardableResult
    package func remove(_ filter: String, _ subscriber: Subscriber) -> Bool {
        let levels = Topic.levels(of: filter)
        let removed = remove(levels[...], subscriber, from: root)
        if removed { count -= 1 }
        return removed
    }

    private func remove(_ levels: ArraySlice<Substring>, _ subscriber: Subscriber, from node: Node) -> Bool {
        guard let level = levels.first else {
            return removeIdentity(subscriber, from: &node.subscribers)
        }
        if level == "#" {
            return removeIdentity(subscriber, from: &node.hashSubscribers)
        }
        let rest = levels.dropFirst()
        if level == "+" {
            guard let child = node.plus else { return false }
            let removed = remove(rest, subscriber, from: child)
            if child.isEmpty { node.plus = nil }
            return removed
        }
        guard let child = node.children[BytewiseKey(level)] else { return false }
        let removed = remove(rest, subscriber, from: child)
        if child.isEmpty { node.children[BytewiseKey(level)] = nil }
        return removed
    }

    private func removeIdentity(_ subscriber: Subscriber, from list: inout [Subscriber]) -> Bool {
        guard let index = list.firstIndex(where: { $0 === subscriber }) else { return false }
        list.swapAt(index, list.count - 1)
        list.removeLast()
        return true
    }

    /// Calls `body` for every subscriber of a filter matching the concrete `levels` of a name.
    /// A subscriber with several matching filters is reported once per filter; the caller
    /// deduplicates. Names starting with `$` are not matched by a leading `+` or `#`.
    package func forEachMatch(_ levels: [Substring], _ body: (Subscriber) -> Void) {
        let reserved = levels.first?.utf8.first == UInt8(ascii: "$")
        visit(root, levels[...], isRoot: true, reserved: reserved, body)
    }

    private func visit(
        _ node: Node, _ levels: ArraySlice<Substring>, isRoot: Bool, reserved: Bool, _ body: (Subscriber) -> Void
    ) {
        let wildcardsAllowed = !(isRoot && reserved)
        // `#` matches the parent level too: `a/#` matches `a`.
        if wildcardsAllowed { for subscriber in node.hashSubscribers { body(subscriber) } }
        guard let level = levels.first else {
            for subscriber in node.subscribers { body(subscriber) }
            return
        }
        let rest = levels.dropFirst()
        if let child = node.children[BytewiseKey(level)] { visit(child, rest, isRoot: false, reserved: reserved, body) }
        if wildcardsAllowed, let plus = node.plus { visit(plus, rest, isRoot: false, reserved: reserved, body) }
    }
}

/// A topic, filter or level as the broker keys it: equal when the UTF-8 bytes are equal. A
/// `String` or `Substring` key would use Unicode canonical equivalence, so `café` precomposed and
/// `cafe` + U+0301 would share one entry though they are two topics on the wire.
struct BytewiseKey: Hashable {
    let text: Substring

    init(_ text: Substring) { self.text = text }
    init(_ text: String) { self.text = text[...] }

    static func == (lhs: BytewiseKey, rhs: BytewiseKey) -> Bool {
        lhs.text.utf8.elementsEqual(rhs.text.utf8)
    }

    func hash(into hasher: inout Hasher) {
        let hashed: Void? = text.utf8.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil { Array(text.utf8).withUnsafeBytes { hasher.combine(bytes: $0) } }
    }
}
