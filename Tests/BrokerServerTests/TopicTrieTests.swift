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
        trie.forEachMatch(topic.split(separator: "/", omittingEmptySubsequences: false)) { names.append($0.name) }
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
}
