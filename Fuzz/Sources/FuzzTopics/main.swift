import BrokerProtocol
import FuzzSupport

@testable import BrokerServer

// Topic names and filters: `Topic.validateName`, `validateFilter`, `levels`, `matches`, and the
// server's subscription index, `TopicTrie`, which must match exactly what `Topic.matches` says.
//
// Input: one byte `n`; the next `n % (rest + 1)` bytes are filters (one per line, at most 8),
// the rest is the published name.
//
// Invariants: a valid name is a valid filter; levels joined by `/` give the topic back; a
// wildcard-free filter matches itself; the trie finds exactly the filters `Topic.matches`
// accepts, and is empty again once they are removed.

final class Subscriber {
    let filter: String
    init(_ filter: String) { self.filter = filter }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTopics(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let split = Int(input.byte()) % (input.remaining + 1)
    let filterText = String(decoding: input.take(split), as: UTF8.self)
    let name = String(decoding: input.rest(), as: UTF8.self)
    let filters = filterText.split(separator: "\n", omittingEmptySubsequences: false).prefix(8).map(String.init)

    for topic in filters + [name] {
        fuzzCheck(Topic.levels(of: topic).joined(separator: "/").utf8.elementsEqual(topic.utf8), "levels of \(topic) do not join back")
        let validName = (try? Topic.validateName(topic)) != nil
        let validFilter = (try? Topic.validateFilter(topic)) != nil
        if validName {
            fuzzCheck(validFilter, "valid name \(topic) is not a valid filter")
            fuzzCheck(!Topic.isWildcard(topic), "valid name \(topic) has a wildcard")
        }
        if validFilter && !Topic.isWildcard(topic) {
            fuzzCheck(Topic.matches(filter: topic, name: topic), "\(topic) does not match itself")
        }
    }

    guard (try? Topic.validateName(name)) != nil else { return 0 }
    let trie = TopicTrie<Subscriber>()
    var subscribers: [Subscriber] = []
    for filter in filters where (try? Topic.validateFilter(filter)) != nil {
        let subscriber = Subscriber(filter)
        subscribers.append(subscriber)
        trie.insert(filter, subscriber)
    }
    var found: [ObjectIdentifier] = []
    trie.forEachMatch(Topic.levels(of: name)) { found.append(ObjectIdentifier($0)) }
    let expected = subscribers.filter { Topic.matches(filter: $0.filter, name: name) }.map(ObjectIdentifier.init)
    fuzzCheck(
        found.count == expected.count && Set(found) == Set(expected),
        "the trie matches \(found.count) of \(subscribers.map(\.filter)) for \(name), Topic.matches \(expected.count)")
    for subscriber in subscribers {
        fuzzCheck(trie.remove(subscriber.filter, subscriber), "\(subscriber.filter) could not be removed")
    }
    fuzzCheck(trie.count == 0, "the trie keeps \(trie.count) subscribers")
    return 0
}
