import BrokerProtocol

/// A subscription index: topic filters in a trie keyed by level, so that matching a published
/// name walks only the branches that can match (its literal levels, `+` and `#`).
///
/// Chains of literal levels that no other filter branches from are kept in one node (a radix
/// trie): a deep filter costs one node, not one node and one dictionary per level. Without it a
/// client's 1,000 filters of 32 distinct levels took 7 MiB of the broker's memory.
///
/// Levels are compared byte for byte, as PROTOCOL.md and MQTT compare topics: `café` written
/// precomposed and `cafe` + U+0301 are two topics, though Swift's `String` calls them equal.
///
/// Not thread-safe: each event loop owns one trie for its own connections, so the publish path
/// takes no lock. Subscribers are compared by identity.
///
/// `package`: the microbenchmarks (Benchmarks/TopicMatching) drive it directly.
package final class TopicTrie<Subscriber: AnyObject> {
    /// A node stands for one level (its key in the parent, or `+`) followed by its `tail`: the
    /// literal levels after it that every filter through this node shares.
    final class Node {
        /// The tail's levels joined by `/` (a slice of the filter that made them); empty with a
        /// count of 0 when there are none (a count of 1 with empty text is one empty level).
        var tail: Substring
        var tailLevelCount: Int
        var children: [BytewiseKey: Node] = [:]
        var plus: Node?
        /// Subscribers of the filter ending with `#` right after this node's tail.
        var hashSubscribers: [Subscriber] = []
        /// Subscribers of the filter ending exactly at the end of this node's tail.
        var subscribers: [Subscriber] = []

        init(tail: Substring = "", tailLevelCount: Int = 0) {
            self.tail = tail
            self.tailLevelCount = tailLevelCount
        }

        /// A node whose tail is the run of literal levels of `levels` from `start` on.
        convenience init(literalRunOf levels: [Substring], from start: Int) {
            var end = start
            while end < levels.count, levels[end] != "+", levels[end] != "#" { end += 1 }
            guard end > start else {
                self.init()
                return
            }
            let first = levels[start], last = levels[end - 1]
            self.init(tail: first.base[first.startIndex..<last.endIndex], tailLevelCount: end - start)
        }

        var isEmpty: Bool {
            children.isEmpty && plus == nil && hashSubscribers.isEmpty && subscribers.isEmpty
        }

        /// The tail's levels, as slices of the same text. Cut on the UTF-8 bytes like
        /// `Topic.levels`: `Substring.split` cuts between characters, and a `/` followed by a
        /// combining mark is one character, so it kept `a/\u{59A}` as one level.
        var tailLevels: [Substring] {
            guard tailLevelCount > 0 else { return [] }
            var levels: [Substring] = []
            let utf8 = tail.utf8
            var start = utf8.startIndex
            var index = start
            while index != utf8.endIndex {
                if utf8[index] == UInt8(ascii: "/") {
                    levels.append(tail[start..<index])
                    start = utf8.index(after: index)
                }
                utf8.formIndex(after: &index)
            }
            levels.append(tail[start..<index])
            return levels
        }

        /// How many of the tail's levels equal `levels[start...]`, level by level, byte for byte.
        func sharedTailLevels(with levels: [Substring], from start: Int) -> Int {
            guard tailLevelCount > 0 else { return 0 }
            var shared = 0
            var cursor = tail.utf8.startIndex
            let end = tail.utf8.endIndex
            while shared < tailLevelCount, start + shared < levels.count {
                let level = levels[start + shared].utf8
                var scan = cursor
                var matched = true
                for byte in level {
                    guard scan != end, tail.utf8[scan] == byte else {
                        matched = false
                        break
                    }
                    tail.utf8.formIndex(after: &scan)
                }
                // The tail's level must end where the given one does: at a `/` or at the end.
                guard matched, scan == end || tail.utf8[scan] == UInt8(ascii: "/") else { break }
                shared += 1
                if scan != end { tail.utf8.formIndex(after: &scan) }
                cursor = scan
            }
            return shared
        }

        func tailMatches(_ levels: [Substring], from start: Int) -> Bool {
            tailLevelCount == 0
                || (start + tailLevelCount <= levels.count && sharedTailLevels(with: levels, from: start) == tailLevelCount)
        }

        /// Cuts the tail after its first `keep` levels: the rest, with everything below, moves
        /// into a new child keyed by the first level cut.
        func splitTail(keeping keep: Int) {
            let levels = tailLevels
            let lower = Node(literalRunOf: levels, from: keep + 1)
            lower.children = children
            lower.plus = plus
            lower.hashSubscribers = hashSubscribers
            lower.subscribers = subscribers
            children = [BytewiseKey(levels[keep]): lower]
            plus = nil
            hashSubscribers = []
            subscribers = []
            if keep == 0 {
                tail = ""
            } else {
                tail = tail.base[levels[0].startIndex..<levels[keep - 1].endIndex]
            }
            tailLevelCount = keep
        }

        /// Takes its only child into its tail when nothing else hangs here, so that removals
        /// leave the same shape as if the removed filters had never been inserted.
        func absorbOnlyChildIfAlone() {
            guard plus == nil, hashSubscribers.isEmpty, subscribers.isEmpty, children.count == 1,
                let (key, child) = children.first
            else { return }
            var joined = tailLevelCount > 0 ? String(tail) + "/" : ""
            joined += String(key.text)
            if child.tailLevelCount > 0 { joined += "/" + String(child.tail) }
            tail = joined[...]
            tailLevelCount += 1 + child.tailLevelCount
            children = child.children
            plus = child.plus
            hashSubscribers = child.hashSubscribers
            subscribers = child.subscribers
        }
    }

    private let root = Node()
    package private(set) var count = 0

    package init() {}

    /// Adds `subscriber` under `filter` (a valid filter). Adding the same pair twice is the
    /// caller's mistake; the connection keeps its own set of filters to avoid it.
    package func insert(_ filter: String, _ subscriber: Subscriber) {
        let levels = Topic.levels(of: filter)
        var node = root
        var index = 0
        // `node` and its tail stand for `levels[..<index]`.
        while index < levels.count {
            let level = levels[index]
            if level == "#" {
                node.hashSubscribers.append(subscriber)
                count += 1
                return
            }
            let child: Node
            if level == "+" {
                if let existing = node.plus {
                    child = existing
                } else {
                    child = Node(literalRunOf: levels, from: index + 1)
                    node.plus = child
                }
            } else if let existing = node.children[BytewiseKey(level)] {
                child = existing
            } else {
                child = Node(literalRunOf: levels, from: index + 1)
                node.children[BytewiseKey(level)] = child
            }
            index += 1
            let shared = child.sharedTailLevels(with: levels, from: index)
            if shared < child.tailLevelCount { child.splitTail(keeping: shared) }
            index += shared
            node = child
        }
        node.subscribers.append(subscriber)
        count += 1
    }

    /// Removes `subscriber` from `filter`, pruning branches that became empty.
    @discardableResult
    package func remove(_ filter: String, _ subscriber: Subscriber) -> Bool {
        let removed = remove(Topic.levels(of: filter), from: 0, subscriber, at: root)
        if removed { count -= 1 }
        return removed
    }

    private func remove(_ levels: [Substring], from index: Int, _ subscriber: Subscriber, at node: Node) -> Bool {
        guard index < levels.count else {
            return removeIdentity(subscriber, from: &node.subscribers)
        }
        let level = levels[index]
        if level == "#" {
            return removeIdentity(subscriber, from: &node.hashSubscribers)
        }
        let key = BytewiseKey(level)
        guard let child = level == "+" ? node.plus : node.children[key],
            child.tailMatches(levels, from: index + 1)
        else { return false }
        guard remove(levels, from: index + 1 + child.tailLevelCount, subscriber, at: child) else { return false }
        if child.isEmpty {
            if level == "+" { node.plus = nil } else { node.children[key] = nil }
        } else {
            child.absorbOnlyChildIfAlone()
        }
        if node !== root { node.absorbOnlyChildIfAlone() }
        return true
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
        visit(root, levels, from: 0, isRoot: true, reserved: reserved, body)
    }

    /// `node` and its tail have matched `levels[..<index]`.
    private func visit(
        _ node: Node, _ levels: [Substring], from index: Int, isRoot: Bool, reserved: Bool, _ body: (Subscriber) -> Void
    ) {
        let wildcardsAllowed = !(isRoot && reserved)
        // `#` matches the parent level too: `a/#` matches `a`.
        if wildcardsAllowed { for subscriber in node.hashSubscribers { body(subscriber) } }
        guard index < levels.count else {
            for subscriber in node.subscribers { body(subscriber) }
            return
        }
        if let child = node.children[BytewiseKey(levels[index])], child.tailMatches(levels, from: index + 1) {
            visit(child, levels, from: index + 1 + child.tailLevelCount, isRoot: false, reserved: reserved, body)
        }
        if wildcardsAllowed, let plus = node.plus, plus.tailMatches(levels, from: index + 1) {
            visit(plus, levels, from: index + 1 + plus.tailLevelCount, isRoot: false, reserved: reserved, body)
        }
    }

    /// Nodes in the trie, the root included: its memory is proportional to this.
    package var nodeCount: Int {
        func count(_ node: Node) -> Int {
            1 + node.children.values.reduce(0) { $0 + count($1) } + (node.plus.map(count) ?? 0)
        }
        return count(root)
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
