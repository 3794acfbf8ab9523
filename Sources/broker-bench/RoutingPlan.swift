import ArgumentParser
import BrokerProtocol
import NIOCore

/// Where every subscription of a `routing` run lives and what it is called: arithmetic only.
///
/// Subscription j (0 ..< topics x perTopic) is replica j % K of topic j / K and lives on
/// connection j % C, so the K subscriptions of a topic sit on K consecutive connections, all
/// different when K <= C, and every connection holds about topics x K / C of them. Subscription j
/// is a wildcard filter when j % 100 < wildcardShare, the single-level and the multi-level form
/// taking turns. Every filter, exact or not, matches exactly the one published topic it is meant
/// for, so the deliveries are the same whatever the share: only the broker's matching work changes.
struct RoutingPlan: Sendable {
    enum Target: String, Sendable, CaseIterable, ExpressibleByArgument {
        /// This broker (PROTOCOL.md).
        case ours
        /// nats-server's WebSocket listener, NATS client protocol.
        case nats
    }

    enum Filter { case exact, singleLevel, multiLevel }

    var target: Target
    var topics: Int
    var perTopic: Int
    var connections: Int
    var publishers: Int
    /// Percent of the subscriptions that are wildcard filters, 0...100.
    var wildcardShare: Int

    var subscriptions: Int { topics * perTopic }

    func topic(ofSubscription j: Int) -> Int { j / perTopic }

    func connection(ofSubscription j: Int) -> Int { j % connections }

    /// The subscriptions connection `c` holds, in the order it asks for them.
    func subscriptions(onConnection c: Int) -> StrideTo<Int> { stride(from: c, to: subscriptions, by: connections) }

    func subscriptionCount(onConnection c: Int) -> Int {
        c < subscriptions ? (subscriptions - 1 - c) / connections + 1 : 0
    }

    /// The most any connection holds (connection 0's count).
    var subscriptionsPerConnection: Int { subscriptionCount(onConnection: 0) }

    /// Connection `c`'s subscription to topic `t`, or nil when it has none.
    func subscription(topic t: Int, connection c: Int) -> Int? {
        guard t >= 0, t < topics, c >= 0, c < connections else { return nil }
        let first = t * perTopic
        let replica = ((c - first) % connections + connections) % connections
        return replica < perTopic ? first + replica : nil
    }

    func filter(ofSubscription j: Int) -> Filter {
        let slot = j % 100
        guard slot < wildcardShare else { return .exact }
        let ordinal = (j / 100) * wildcardShare + slot  // how many wildcard subscriptions precede j
        return ordinal % 2 == 0 ? .singleLevel : .multiLevel
    }

    var wildcardSubscriptions: Int {
        (subscriptions / 100) * wildcardShare + min(subscriptions % 100, wildcardShare)
    }

    /// Publisher p owns topics p, p + P, p + 2P, ...
    func publisher(ofTopic t: Int) -> Int { t % publishers }

    /// How many topics publisher p (< publishers <= topics) owns.
    func topicCount(ofPublisher p: Int) -> Int { (topics - 1 - p) / publishers + 1 }

    private var separator: UInt8 { target == .ours ? UInt8(ascii: "/") : UInt8(ascii: ".") }

    /// Topic `t`'s name: `r/<t>/x` (ours) or the subject `r.<t>.x` (NATS).
    func writeTopic(_ t: Int, into buffer: inout ByteBuffer) {
        writeLevels(t, last: UInt8(ascii: "x"), into: &buffer)
    }

    /// Subscription j's filter: the topic itself, or its last level replaced by the single-level
    /// (`+`, NATS `*`) or the multi-level wildcard (`#`, NATS `>`).
    func writeFilter(ofSubscription j: Int, into buffer: inout ByteBuffer) {
        let last: UInt8
        switch filter(ofSubscription: j) {
        case .exact: last = UInt8(ascii: "x")
        case .singleLevel: last = target == .ours ? UInt8(ascii: "+") : UInt8(ascii: "*")
        case .multiLevel: last = target == .ours ? UInt8(ascii: "#") : UInt8(ascii: ">")
        }
        writeLevels(topic(ofSubscription: j), last: last, into: &buffer)
    }

    private func writeLevels(_ t: Int, last: UInt8, into buffer: inout ByteBuffer) {
        buffer.writeMultipleIntegers(UInt8(ascii: "r"), separator)
        buffer.writeDecimal(UInt64(t))
        buffer.writeMultipleIntegers(separator, last)
    }

    /// The index in a topic name this plan wrote (`r/<t>/x`, `r.<t>.x`), nil for any other name.
    func topicIndex(_ name: UnsafeRawBufferPointer) -> Int? {
        let count = name.count
        guard count >= 5, name[0] == UInt8(ascii: "r"), name[1] == separator,
            name[count - 2] == separator, name[count - 1] == UInt8(ascii: "x"), count - 4 <= 18
        else { return nil }
        var value = 0
        for i in 2..<(count - 2) {
            let digit = name[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int(digit)
        }
        return value
    }
}
