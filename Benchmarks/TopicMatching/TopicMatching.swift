import Benchmark
import BrokerProtocol
import BrokerServer
import NIOCore

// Topic validation and splitting (BrokerProtocol), the subscription trie (BrokerServer) and the
// per-publish work of a fan-out: split the name, encode the frame once, walk the trie. Every
// benchmark runs 1,000 operations per iteration (`scalingFactor: .kilo`), so the figures the
// tool prints are per operation.

/// Stands in for a connection: the shard stamps a delivery sequence on it to deduplicate
/// overlapping filters, as `FanoutShard.deliver` does.
final class Subscriber {
    var lastDeliverySequence: UInt64 = 0
}

/// A deterministic topic space shaped like telemetry: site/building/floor/room/metric.
enum TopicSpace {
    static let metrics = ["temperature", "humidity", "co2", "occupancy"]

    /// A few cheap pseudo-random numbers (no Foundation, same sequence every run).
    struct Generator {
        var state: UInt64
        mutating func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(bound))
        }
    }

    static func name(_ g: inout Generator) -> String {
        "site-\(g.next(10))/building-\(g.next(10))/floor-\(g.next(10))/room-\(g.next(20))/\(metrics[g.next(4)])"
    }

    /// `count` filters: 70% exact names, 20% with `+` levels, 10% ending in `#`.
    static func filters(_ count: Int) -> [String] {
        var g = Generator(state: 42)
        return (0..<count).map { index in
            switch index % 10 {
            case 0: return "site-\(g.next(10))/building-\(g.next(10))/#"
            case 1: return "site-\(g.next(10))/+/floor-\(g.next(10))/+/\(metrics[g.next(4)])"
            case 2: return "+/building-\(g.next(10))/floor-\(g.next(10))/room-\(g.next(20))/+"
            default: return name(&g)
            }
        }
    }

    /// Names to publish to, some matched by many filters, some by none.
    static func names(_ count: Int) -> [String] {
        var g = Generator(state: 7)
        return (0..<count).map { _ in name(&g) }
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let name = "site-3/building-7/floor-2/room-12/temperature"
    let filter = "site-3/+/floor-2/#"

    // MARK: Topic (BrokerProtocol)

    Benchmark("Topic.validateName") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? Topic.validateName(name))
        }
    }

    Benchmark("Topic.validateFilter") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try? Topic.validateFilter(filter))
        }
    }

    Benchmark("Topic.levels(of:) 5 levels") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Topic.levels(of: name))
        }
    }

    Benchmark("Topic.matches(filter:name:)") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(Topic.matches(filter: filter, name: name))
        }
    }

    // MARK: TopicTrie (BrokerServer)

    let filters = TopicSpace.filters(10_000)
    let names = TopicSpace.names(1_024)
    let subscribers = (0..<10_000).map { _ in Subscriber() }

    // A fresh trie per iteration, 1,000 filters into it: per insert, amortizing the trie.
    Benchmark("TopicTrie.insert (1k filters, 30% wildcards)") { benchmark in
        let trie = TopicTrie<Subscriber>()
        for index in benchmark.scaledIterations {
            trie.insert(filters[index], subscribers[index])
        }
        blackHole(trie)
    }

    // The trie a busy loop might hold: 10,000 filters (built once, outside the measurement).
    let trie = TopicTrie<Subscriber>()
    for (index, filter) in filters.enumerated() { trie.insert(filter, subscribers[index]) }
    let levels = names.map { Topic.levels(of: $0) }

    // Each operation matches one name whose levels were split beforehand (a publish splits its
    // name once for every loop).
    Benchmark("TopicTrie.forEachMatch (10k filters)") { benchmark in
        var matched = 0
        for index in benchmark.scaledIterations {
            trie.forEachMatch(levels[index & 1_023]) { _ in matched &+= 1 }
        }
        blackHole(matched)
    }

    Benchmark("Topic.levels + TopicTrie.forEachMatch (10k filters)") { benchmark in
        var matched = 0
        for index in benchmark.scaledIterations {
            trie.forEachMatch(Topic.levels(of: names[index & 1_023])) { _ in matched &+= 1 }
        }
        blackHole(matched)
    }

    // MARK: Fan-out: one publish, N subscribers on one topic

    // What a publish costs before any connection writes: split the name, encode the 64-byte
    // text frame once (`OutboundMessage`), match it in the trie and stamp each subscriber once.
    // Subscribers use three overlapping kinds of filter (exact, `+`, `#`). The malloc count per
    // publish must not grow with N.
    let payload = ByteBuffer(string: #"{"t":21.5,"unit":"C","sensor":"room12","ts":1732612345678,"v":0}"#)
    precondition(payload.readableBytes == 64)
    let allocator = ByteBufferAllocator()
    let fanoutFilters = [name, "site-3/+/floor-2/+/temperature", "site-3/building-7/#"]
    // One sequence for all of them: the subscribers are shared, so a stamp must never repeat.
    var sequence: UInt64 = 0
    for count in [1, 100, 10_000] {
        let trie = TopicTrie<Subscriber>()
        for index in 0..<count { trie.insert(fanoutFilters[index % 3], subscribers[index]) }
        Benchmark("Fan-out match+encode, \(count) subscribers") { benchmark in
            var delivered = 0
            for _ in benchmark.scaledIterations {
                let message = OutboundMessage(
                    topic: name, payload: payload, isBinary: false, offset: nil, allocator: allocator)
                sequence &+= 1
                let current = sequence
                trie.forEachMatch(message.levels) { subscriber in
                    guard subscriber.lastDeliverySequence != current else { return }
                    subscriber.lastDeliverySequence = current
                    delivered &+= 1
                }
                blackHole(message)
            }
            precondition(delivered == count * benchmark.scaledIterations.count)
        }
    }
}
