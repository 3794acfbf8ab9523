import BrokerProtocol
import NIOCore
import Testing

@testable import broker_bench

/// The pure parts of `broker-bench routing`: a benchmark whose parser drops or invents messages,
/// or whose plan puts a topic's subscribers on one connection, measures something else.
@Suite struct RoutingBenchTests {
    // MARK: NATS stream parser

    enum Event: Equatable { case info, msg(String, UInt64, String), ping, pong, ok, err(String) }

    static func events(_ frames: [[UInt8]]) throws -> [Event] {
        var parser = NATSStreamParser()
        var out: [Event] = []
        for frame in frames {
            try parser.consume(ByteBuffer(bytes: frame)) { message in
                switch message {
                case .info: out.append(.info)
                case .msg(let subject, let sid, let payload): out.append(.msg(String(buffer: subject), sid, String(buffer: payload)))
                case .ping: out.append(.ping)
                case .pong: out.append(.pong)
                case .ok: out.append(.ok)
                case .err(let text): out.append(.err(text))
                }
            }
        }
        return out
    }

    static let stream = Array(
        ("INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n" + "MSG r.1.x 7 5\r\nhello\r\n"
            + "MSG r.22.x 8 reply.to 4\r\na\r\nb\r\n" + "PING\r\n" + "PONG\r\n" + "+OK\r\n"
            + "msg\tr.3.x\t9\t0\r\n\r\n" + "-ERR 'Unknown Protocol Operation'\r\n").utf8)
    static let expected: [Event] = [
        .info, .msg("r.1.x", 7, "hello"), .msg("r.22.x", 8, "a\r\nb"), .ping, .pong, .ok, .msg("r.3.x", 9, ""),
        .err("-ERR 'Unknown Protocol Operation'"),
    ]

    /// WebSocket frames may split NATS protocol messages anywhere: every cut gives the same messages.
    @Test func theNATSParserReassemblesMessagesSplitAnywhere() throws {
        let stream = Self.stream
        #expect(try Self.events([stream]) == Self.expected)
        for cut in 0...stream.count {
            #expect(try Self.events([Array(stream[..<cut]), Array(stream[cut...])]) == Self.expected, "cut at \(cut)")
        }
        for first in stride(from: 0, through: stream.count, by: 7) {
            for second in stride(from: first, through: stream.count, by: 3) {
                let parts = [Array(stream[..<first]), Array(stream[first..<second]), Array(stream[second...])]
                #expect(try Self.events(parts) == Self.expected, "cuts at \(first), \(second)")
            }
        }
        #expect(try Self.events(stream.map { [$0] }) == Self.expected)
    }

    @Test(arguments: [
        String(repeating: "M", count: 5_000), "MSG r.1.x notanumber 5\r\nhello\r\n", "HMSG r.1.x 1 5 5\r\n",
    ])
    func theNATSParserRefusesWhatItCannotCount(_ input: String) {
        #expect(throws: (any Error).self) { try Self.events([Array(input.utf8)]) }
    }

    // MARK: The plan

    @Test(arguments: [(1_000, 10, 200, 0), (1_000, 10, 1_000, 50), (100, 10, 1_000, 100), (777, 7, 13, 1), (10, 3, 3, 33)])
    func aTopicsSubscribersAreOnDistinctConnectionsAndTheSharesHold(topics: Int, perTopic: Int, connections: Int, share: Int) {
        for target in RoutingPlan.Target.allCases {
            let plan = RoutingPlan(
                target: target, topics: topics, perTopic: perTopic, connections: connections, publishers: 10, wildcardShare: share)
            var perConnection = [Int](repeating: 0, count: connections)
            var single = 0
            var multi = 0
            for j in 0..<plan.subscriptions {
                let connection = plan.connection(ofSubscription: j)
                perConnection[connection] += 1
                #expect(plan.subscription(topic: plan.topic(ofSubscription: j), connection: connection) == j)
                switch plan.filter(ofSubscription: j) {
                case .exact: break
                case .singleLevel: single += 1
                case .multiLevel: multi += 1
                }
            }
            for topic in stride(from: 0, to: topics, by: max(1, topics / 50)) {
                let holders = Set((0..<perTopic).map { plan.connection(ofSubscription: topic * perTopic + $0) })
                #expect(holders.count == perTopic)
                #expect(Set((0..<connections).filter { plan.subscription(topic: topic, connection: $0) != nil }) == holders)
            }
            for connection in 0..<connections {
                #expect(perConnection[connection] == plan.subscriptionCount(onConnection: connection))
                #expect(Array(plan.subscriptions(onConnection: connection)).count == perConnection[connection])
            }
            #expect(perConnection.max() == plan.subscriptionsPerConnection)
            #expect(single + multi == plan.wildcardSubscriptions)
            #expect(abs(single - multi) <= 1)
        }
    }

    @Test func namesAreEachBrokersSpellingAndParseBack() {
        for target in RoutingPlan.Target.allCases {
            let plan = RoutingPlan(target: target, topics: 1_000, perTopic: 10, connections: 1_000, publishers: 10, wildcardShare: 50)
            let separator = target == .ours ? "/" : "."
            var topic = ByteBuffer()
            plan.writeTopic(123, into: &topic)
            #expect(String(buffer: topic) == "r\(separator)123\(separator)x")
            #expect(topic.withUnsafeReadableBytes { plan.topicIndex($0) } == 123)
            for j in [0, 1, 2, 50, 99, 100, 101] {
                var filter = ByteBuffer()
                plan.writeFilter(ofSubscription: j, into: &filter)
                let last: String
                switch plan.filter(ofSubscription: j) {
                case .exact: last = "x"
                case .singleLevel: last = target == .ours ? "+" : "*"
                case .multiLevel: last = target == .ours ? "#" : ">"
                }
                let t = plan.topic(ofSubscription: j)
                #expect(String(buffer: filter) == "r\(separator)\(t)\(separator)\(last)")
            }
        }
        let plan = RoutingPlan(target: .ours, topics: 100, perTopic: 10, connections: 1_000, publishers: 10, wildcardShare: 0)
        for name in ["r/x/x", "r/1/y", "q/1/x", "r/1/x/", "r//x", "r/12345678901234567890/x"] {
            #expect(Array(name.utf8).withUnsafeBytes { plan.topicIndex($0) } == nil, "accepted \(name)")
        }
        #expect(plan.subscription(topic: 100, connection: 0) == nil)
    }

    // MARK: Payloads and our frames

    @Test func payloadsCarryTheirStampAtEverySize() {
        for size in [29, 64, 1_000] {
            var buffer = ByteBuffer()
            RoutingPayload.writeText((sentAt: 1_234_567_890_123_456_789, sequence: 4_000_000_000), size: size, into: &buffer)
            #expect(buffer.readableBytes == size)
            #expect(buffer.withUnsafeReadableBytes(RoutingPayload.readText) == .measured(sentAt: 1_234_567_890_123_456_789, sequence: 4_000_000_000))
            buffer.clear()
            RoutingPayload.writeText(nil, size: size, into: &buffer)
            #expect(buffer.readableBytes == size && buffer.withUnsafeReadableBytes(RoutingPayload.readText) == .warmUp)
        }
        for size in [12, 64] {
            var buffer = ByteBuffer()
            RoutingPayload.writeBinary((sentAt: 987_654_321, sequence: 77), size: size, into: &buffer)
            #expect(buffer.readableBytes == size)
            #expect(buffer.withUnsafeReadableBytes(RoutingPayload.readBinary) == .measured(sentAt: 987_654_321, sequence: 77))
        }
    }

    @Test func ourMessageFramesAreReadBackAndRepliesAreNotMessages() {
        let plan = RoutingPlan(target: .ours, topics: 100, perTopic: 10, connections: 1_000, publishers: 10, wildcardShare: 0)
        var data = ByteBuffer(string: "\"")
        RoutingPayload.writeText((sentAt: 42, sequence: 7), size: 64, into: &data)
        data.writeString("\"")
        var frame = ByteBuffer()
        ServerMessageEncoder.message(topic: "r/55/x", data: data, offset: nil, replay: false, into: &frame)
        let delivery = OursDelivery.text(frame, plan: plan)
        #expect(delivery?.topic == 55 && delivery?.stamp == .measured(sentAt: 42, sequence: 7))
        frame.clear()
        ServerMessageEncoder.subscribed(topic: "r/1/+", id: nil, recovered: nil, into: &frame)
        #expect(OursDelivery.text(frame, plan: plan) == nil && OursDelivery.hasPrefix(frame, OursDelivery.subscribedPrefix))
        var payload = ByteBuffer()
        RoutingPayload.writeBinary((sentAt: 43, sequence: 8), size: 20, into: &payload)
        for offset in [nil, UInt64(99)] {
            frame.clear()
            BinaryCodec.encodeMessage(topic: "r/56/x", payload: payload, offset: offset, replay: false, into: &frame)
            let binary = OursDelivery.binary(frame, plan: plan)
            #expect(binary?.topic == 56 && binary?.stamp == .measured(sentAt: 43, sequence: 8))
        }
    }
}
