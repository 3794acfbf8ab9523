import BrokerProtocol
import Testing

@testable import BrokerServer

final class Probe {
    let name: String
    init(_ name: String) { self.name = name }
}

@Suite struct TopicTrieTests {
    func matches(_ trie: TopicTrie<Probe>, _ topic: String) -> [String] {
        var names: [String] = []
        trie.forEachMatch(Topic.levels(of: topic)) { names.append($0.name) }
        return names.sorted()
    }

    @Test func literalWildcardAndHash() {
        let trie = TopicTrie<Probe>()
        let exact = Probe("exact"), plus = Probe("plus"), hash = Probe("hash"), all = Probe("all")
        trie.insert("sensors/a/temp", exact)
        trie.insert("sensors/+/temp", plus)
        trie.insert("sensors/#", hash)
        trie.insert("#", all)
        #expect(matches(trie, "sensors/a/temp") == ["all", "exact", "hash", "plus"])
        #expect(matches(trie, "sensors/b/temp") == ["all", "hash", "plus"])
        #expect(matches(trie, "sensors") == ["all", "hash"])  // `#` matches the parent level
        #expect(matches(trie, "sensors/a/temp/x") == ["all", "hash"])
        #expect(matches(trie, "other") == ["all"])
        #expect(trie.count == 4)
    }

    @Test func reservedTopicsAreNotMatchedByLeadingWildcards() {
        let trie = TopicTrie<Probe>()
        trie.insert("#", Probe("hash"))
        trie.insert("+/stats", Probe("plus"))
        trie.insert("$sys/#", Probe("sys"))
        trie.insert("$sys/+", Probe("sysplus"))
        #expect(matches(trie, "$sys/stats") == ["sys", "sysplus"])
        #expect(matches(trie, "app/stats") == ["hash", "plus"])
    }

    @Test func emptyLevels() {
        let trie = TopicTrie<Probe>()
        trie.insert("a//b", Probe("literal"))
        trie.insert("a/+/b", Probe("plus"))
        #expect(matches(trie, "a//b") == ["literal", "plus"])
        #expect(matches(trie, "a/x/b") == ["plus"])
        #expect(matches(trie, "a/b") == [])
    }

    @Test func removePrunesAndKeepsOthers() {
        let trie = TopicTrie<Probe>()
        let first = Probe("first"), second = Probe("second")
        trie.insert("a/+/c", first)
        trie.insert("a/+/c", second)
        trie.insert("a/#", first)
        #expect(trie.remove("a/+/c", first))
        #expect(!trie.remove("a/+/c", first))
        #expect(matches(trie, "a/b/c") == ["first", "second"])  // second via a/+/c, first via a/#
        #expect(trie.remove("a/#", first))
        #expect(trie.remove("a/+/c", second))
        #expect(matches(trie, "a/b/c") == [])
        #expect(trie.count == 0)
        #expect(!trie.remove("x/y", first))
    }

    /// Found by Fuzz/ (topics): Swift's string equality is canonical equivalence, so the trie
    /// took `café` (U+00E9) and `cafe` + U+0301 for one level, while topics match byte for byte
    /// (`Topic.matches`, the journal's filters): a subscriber of one got the other's messages.
    @Test func levelsAreComparedByteForByteNotByCanonicalEquivalence() {
        let trie = TopicTrie<Probe>()
        let precomposed = "caf\u{E9}", decomposed = "cafe\u{301}"
        #expect(precomposed == decomposed && !precomposed.utf8.elementsEqual(decomposed.utf8))
        let first = Probe("precomposed"), second = Probe("decomposed")
        trie.insert(precomposed + "/#", first)
        trie.insert(decomposed + "/+", second)
        #expect(matches(trie, precomposed + "/x") == ["precomposed"])
        #expect(matches(trie, decomposed + "/x") == ["decomposed"])
        #expect(Topic.matches(filter: precomposed + "/#", name: decomposed + "/x") == false)
        // Removing under the other spelling finds nothing; under its own, only that one goes.
        #expect(!trie.remove(decomposed + "/#", first))
        #expect(trie.remove(precomposed + "/#", first))
        #expect(matches(trie, decomposed + "/x") == ["decomposed"])
        #expect(trie.count == 1)
    }

    /// Found by Fuzz/ (topics) in CI: a level that starts with a combining mark makes `/` and
    /// the mark one `Character`, so a character-wise split of a node's tail saw one level fewer
    /// than there are; splitting that tail for a second filter then cut it in the wrong place,
    /// and the first filter could no longer be removed (its subscriber leaked in the trie).
    @Test func aLevelStartingWithACombiningMarkIsStillALevel() {
        let trie = TopicTrie<Probe>()
        let first = Probe("first"), second = Probe("second")
        trie.insert("a/b/\u{59A}/c", first)
        trie.insert("a/b/\u{59A}/d", second)  // splits the tail `b/\u{59A}/c` after two levels
        #expect(matches(trie, "a/b/\u{59A}/c") == ["first"])
        #expect(matches(trie, "a/b/\u{59A}/d") == ["second"])
        #expect(trie.remove("a/b/\u{59A}/c", first))
        #expect(trie.remove("a/b/\u{59A}/d", second))
        #expect(trie.count == 0 && trie.nodeCount == 1)
    }

    /// Against brute force: filters drawn from a small alphabet, so that they share prefixes,
    /// branch, nest and end inside each other's chains, inserted and removed in random order;
    /// after every step each topic's matches equal `Topic.matches` over the filters still held.
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func matchesEqualBruteForceThroughInsertsAndRemoves(seed: UInt64) {
        var random = PermissionsTests.SplitMix(state: seed)
        let literals = ["a", "b", "", "$s", "c\u{301}", "c\u{E9}", "\u{59A}"]
        func level(wildcards: Bool) -> String {
            let pick = Int(random.next() % UInt64(literals.count + (wildcards ? 1 : 0)))
            return pick == literals.count ? "+" : literals[pick]
        }
        func path(wildcards: Bool) -> String {
            let depth = 1 + Int(random.next() % 5)
            var levels = (0..<depth).map { _ in level(wildcards: wildcards) }
            if wildcards, random.next() % 4 == 0 { levels.append("#") }
            return levels.joined(separator: "/")
        }
        let trie = TopicTrie<Probe>()
        var held: [String: Probe] = [:]
        let topics = (0..<60).map { _ in path(wildcards: false) }
        for step in 0..<400 {
            let filter = path(wildcards: true)
            if let probe = held[filter], random.next() % 3 != 0 {
                #expect(trie.remove(filter, probe))
                held[filter] = nil
            } else if held[filter] == nil {
                let probe = Probe(filter)
                trie.insert(filter, probe)
                held[filter] = probe
            }
            #expect(trie.count == held.count)
            guard step % 20 == 0 || held.isEmpty else { continue }
            for topic in topics {
                let expected = held.keys.filter { Topic.matches(filter: $0, name: topic) }.sorted()
                #expect(matches(trie, topic) == expected, "seed \(seed) step \(step) topic \(topic)")
            }
        }
        for (filter, probe) in held { #expect(trie.remove(filter, probe)) }
        #expect(trie.count == 0 && trie.nodeCount == 1)
    }

    /// Chains of literal levels share one node: 1,000 filters of 32 distinct levels are 1,000
    /// nodes, not 32,000 (7 MiB of the broker's memory for one client's requests). Splitting and
    /// removing keep the shape minimal.
    @Test func deepDistinctFiltersTakeOneNodeEach() {
        let trie = TopicTrie<Probe>()
        let probe = Probe("p")
        let filters = (0..<1000).map { index in (0..<32).map { "\(index)x\($0)" }.joined(separator: "/") }
        for filter in filters { trie.insert(filter, probe) }
        #expect(trie.nodeCount == 1 + 1000)
        trie.insert("0x0/0x1/+/#", probe)  // splits the first chain after two levels
        #expect(matches(trie, filters[0]).count == 2)
        #expect(trie.nodeCount == 1 + 1000 + 2)
        #expect(trie.remove("0x0/0x1/+/#", probe))
        #expect(trie.nodeCount == 1 + 1000)  // the chain is whole again
        for filter in filters { #expect(trie.remove(filter, probe)) }
        #expect(trie.nodeCount == 1 && trie.count == 0)
    }
}
