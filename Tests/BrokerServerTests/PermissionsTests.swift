import BrokerProtocol
import Testing

@testable import BrokerServer

/// Filter coverage (a subscribe is allowed when one granted filter covers the requested one) and
/// the compiled matcher of publish permissions, checked against brute force: every topic over a
/// small alphabet, matched with `Topic.matches` (v1's matcher).
@Suite struct PermissionsTests {
    func covered(_ filter: String, by granted: String) -> Bool {
        CompiledFilter(filter).isCovered(by: CompiledFilter(granted))
    }

    @Test func coverageExamples() {
        #expect(covered("dash/+/cpu", by: "dash/#"))
        #expect(covered("dash/#", by: "dash/#"))
        #expect(covered("dash", by: "dash/#"))  // `#` matches zero levels too
        #expect(covered("a/+", by: "+/+"))
        #expect(covered("a/b", by: "a/+"))
        #expect(covered("#", by: "#"))
        #expect(covered("#", by: "+/#"))  // a name has at least one level
        #expect(covered("$SYS/x", by: "$SYS/#"))
        #expect(!covered("#", by: "dash/#"))
        #expect(!covered("dash/#", by: "dash/+"))
        #expect(!covered("dash/#", by: "dash/+/#"))  // dash/# matches dash
        #expect(!covered("+/+", by: "a/+"))
        #expect(!covered("a/b", by: "a/b/c"))
        #expect(!covered("a/b/c", by: "a/b"))
        #expect(!covered("$SYS/x", by: "#"))  // wildcards at the first level skip $ topics
        #expect(!covered("$SYS/x", by: "+/x"))
        #expect(!covered("$SYS/#", by: "$OTHER/#"))
        #expect(covered("+/x", by: "#"))  // +/x matches no $ topic either
    }

    @Test func permissionsCheckPublishAndSubscribe() {
        let permissions = Permissions(publish: ["cmd/alice", "users/alice/#"], subscribe: ["dash/#", "users/alice/#"])
        #expect(permissions.mayPublish(to: "cmd/alice"))
        #expect(permissions.mayPublish(to: "users/alice/x/y"))
        #expect(!permissions.mayPublish(to: "cmd/bob"))
        #expect(!permissions.mayPublish(to: "dash/x"))
        #expect(permissions.maySubscribe(to: "dash/+/cpu"))
        #expect(!permissions.maySubscribe(to: "#"))
        #expect(!permissions.maySubscribe(to: "users/+/#"))
        #expect(Permissions.everything.mayPublish(to: "x") && Permissions.everything.maySubscribe(to: "#"))
        #expect(!Permissions.nothing.mayPublish(to: "x") && !Permissions.nothing.maySubscribe(to: "x"))
    }

    // MARK: Property tests against brute force

    /// A deterministic generator (SplitMix64), so that a failure names a seed that reproduces it.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Filter levels: two literals, a `$` literal, the wildcards.
    static let filterLevels = ["a", "b", "$s", "+", "#"]
    /// Topic levels: every literal of the filters, an empty level and one no filter names (so a
    /// `+` that a literal does not cover has its witness).
    static let topicLevels = ["a", "b", "$s", "", "z"]

    /// Every topic of 1 to `maxLevels` levels over `topicLevels` (the empty name excluded).
    static func topics(maxLevels: Int) -> [String] {
        var all: [[String]] = [[]]
        var result: [String] = []
        for _ in 1...maxLevels {
            all = all.flatMap { prefix in topicLevels.map { prefix + [$0] } }
            result += all.map { $0.joined(separator: "/") }.filter { !$0.isEmpty }
        }
        return result
    }

    /// Every valid filter of 1 to `maxLevels` levels (`#` only last).
    static func filters(maxLevels: Int) -> [String] {
        var complete: [String] = []
        var open: [[String]] = [[]]
        for _ in 1...maxLevels {
            var next: [[String]] = []
            for prefix in open {
                for level in filterLevels {
                    let filter = prefix + [level]
                    complete.append(filter.joined(separator: "/"))
                    if level != "#" { next.append(filter) }
                }
            }
            open = next
        }
        return complete
    }

    static func randomFilter(_ rng: inout SplitMix, maxLevels: Int) -> String {
        let count = Int.random(in: 1...maxLevels, using: &rng)
        var levels: [String] = []
        for index in 0..<count {
            var level = filterLevels.randomElement(using: &rng)!
            if level == "#" && index < count - 1 { level = "+" }
            levels.append(level)
        }
        return levels.joined(separator: "/")
    }

    /// Brute force: F ⊆ G over the generated topics, and a witness when not.
    static func bruteForce(_ filter: String, _ granted: String, _ topics: [String]) -> (covered: Bool, witness: String?) {
        for topic in topics where Topic.matches(filter: filter, name: topic) && !Topic.matches(filter: granted, name: topic) {
            return (false, topic)
        }
        return (true, nil)
    }

    @Test func coverageAgreesWithBruteForceOnEveryPairOfShortFilters() {
        let filters = Self.filters(maxLevels: 2)
        let topics = Self.topics(maxLevels: 4)
        var checked = 0
        for filter in filters {
            for granted in filters {
                let expected = Self.bruteForce(filter, granted, topics)
                let got = covered(filter, by: granted)
                // Covered: no generated topic of F escapes G. Not covered: a witness was found.
                #expect(got == expected.covered, "\(filter) ⊆ \(granted): \(got), witness \(expected.witness ?? "none")")
                checked += 1
            }
        }
        #expect(checked == filters.count * filters.count)
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func coverageAgreesWithBruteForceOnRandomFilters(seed: UInt64) {
        var rng = SplitMix(state: seed)
        let topics = Self.topics(maxLevels: 5)
        for _ in 0..<40 {
            let filter = Self.randomFilter(&rng, maxLevels: 4)
            // Half the time a granted filter derived from the requested one, so that coverage
            // (rare between two random filters) is exercised as much as its absence.
            var granted = Self.randomFilter(&rng, maxLevels: 4)
            if Bool.random(using: &rng) {
                var levels = filter.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
                let index = Int.random(in: 0..<levels.count, using: &rng)
                levels[index] = Bool.random(using: &rng) ? "+" : "#"
                if levels[index] == "#" { levels = Array(levels[...index]) }
                granted = levels.joined(separator: "/")
            }
            let expected = Self.bruteForce(filter, granted, topics)
            #expect(covered(filter, by: granted) == expected.covered, "seed \(seed): \(filter) ⊆ \(granted), witness \(expected.witness ?? "none")")
        }
    }

    @Test func compiledMatchingAgreesWithTopicMatches() {
        let topics = Self.topics(maxLevels: 4)
        for filter in Self.filters(maxLevels: 3) {
            let compiled = CompiledFilter(filter)
            for topic in topics {
                #expect(compiled.matches(topic) == Topic.matches(filter: filter, name: topic), "\(filter) on \(topic)")
            }
        }
    }
}
