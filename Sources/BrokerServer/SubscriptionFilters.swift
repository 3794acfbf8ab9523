/// The filters one connection subscribes to, byte for byte as the trie holds them. Most
/// connections hold one filter, so one is kept inline and a set is made only for a second: a
/// one-element `Set` is 127 bytes of heap, a sixth of what an idle connection costs the broker
/// besides NIO's own state (docs/benchmarks.md, "19,899 connections").
struct SubscriptionFilters: Sequence {
    private enum Storage {
        case none
        case one(BytewiseKey)
        case many(Set<BytewiseKey>)
    }

    private var storage = Storage.none

    var count: Int {
        switch storage {
        case .none: 0
        case .one: 1
        case .many(let set): set.count
        }
    }

    var isEmpty: Bool { count == 0 }

    func contains(_ filter: BytewiseKey) -> Bool {
        switch storage {
        case .none: false
        case .one(let held): held == filter
        case .many(let set): set.contains(filter)
        }
    }

    /// Adds `filter`; false when it was there already.
    @discardableResult
    mutating func insert(_ filter: BytewiseKey) -> Bool {
        switch storage {
        case .none:
            storage = .one(filter)
            return true
        case .one(let held):
            guard held != filter else { return false }
            storage = .many([held, filter])
            return true
        case .many(var set):
            storage = .none  // `set` is then the only reference: inserting does not copy it
            let inserted = set.insert(filter).inserted
            storage = .many(set)
            return inserted
        }
    }

    /// Removes `filter`, returning it if it was there.
    @discardableResult
    mutating func remove(_ filter: BytewiseKey) -> BytewiseKey? {
        switch storage {
        case .none:
            return nil
        case .one(let held):
            guard held == filter else { return nil }
            storage = .none
            return held
        case .many(var set):
            storage = .none
            let removed = set.remove(filter)
            storage = set.count == 1 ? .one(set.first!) : .many(set)
            return removed
        }
    }

    mutating func removeAll() {
        storage = .none
    }

    func makeIterator() -> Iterator {
        switch storage {
        case .none: Iterator(single: nil, set: nil)
        case .one(let held): Iterator(single: held, set: nil)
        case .many(let set): Iterator(single: nil, set: set.makeIterator())
        }
    }

    struct Iterator: IteratorProtocol {
        fileprivate var single: BytewiseKey?
        fileprivate var set: Set<BytewiseKey>.Iterator?

        mutating func next() -> BytewiseKey? {
            if let held = single {
                single = nil
                return held
            }
            return set?.next()
        }
    }
}
