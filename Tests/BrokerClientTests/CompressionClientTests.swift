import BrokerClient
import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import Testing

@testable import BrokerServer

/// `BrokerClient` with permessage-deflate (its default) and without, against the real broker.
@Suite struct CompressionClientTests {
    static let text = "\"" + String(repeating: "the quick brown fox jumps over the lazy dog ", count: 100) + "\""

    @Test func compressingAndPlainClientsReceiveTheSameMessages() async throws {
        try await TestBroker.with { broker in
            let compressing = makeClient(broker.url)
            var plainConfiguration = testClientConfiguration()
            plainConfiguration.compression = false
            let plain = BrokerClient(url: broker.url, configuration: plainConfiguration, logger: quietLogger("plain"))
            try await compressing.connect()
            try await plain.connect()
            // Only the default client negotiated compression.
            #expect(broker.server.broker.compressingConnections.load(ordering: .relaxed) == 1)

            let compressedReceived = Received.collect(try await compressing.subscribe("z/#", history: 0))
            let plainReceived = Received.collect(try await plain.subscribe("z/#", history: 0))
            // Large (compressed on the wire both ways for the compressing client) and small; one
            // publisher, so that the order is defined.
            _ = try await compressing.publish("z/big", rawJSON: Self.text)
            _ = try await compressing.publish("z/small", rawJSON: "1")
            let bytes = [UInt8](repeating: 0x41, count: 50_000)
            _ = try await compressing.publish("z/bin", bytes: bytes)

            try await compressedReceived.wait(for: 3)
            try await plainReceived.wait(for: 3)
            for received in [compressedReceived, plainReceived] {
                let messages = received.messages
                #expect(messages.map(\.topic) == ["z/big", "z/small", "z/bin"])
                #expect(messages[0].json == Self.text)
                #expect(messages[1].json == "1")
                let same = messages.count == 3 && messages[2].bytes == bytes
                #expect(same)
            }
            await compressing.close()
            await plain.close()
        }
    }

    /// The broker's metric values after a collection, by series (`name{labels}`).
    static func metrics(_ broker: TestBroker) async -> [String: Double] {
        await broker.server.collectMetrics()
        var values: [String: Double] = [:]
        for line in String(decoding: broker.registry.emitToBuffer(), as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            values[String(line[..<space])] = value
        }
        return values
    }

    @Test func compressionCountersCountWhatIsCompressed() async throws {
        // No $sys/broker/stats publishes: they would be compressed too, whenever they fall.
        try await TestBroker.with(configure: { $0.sysStatsInterval = .zero }) { broker in
            var plainConfiguration = testClientConfiguration()
            plainConfiguration.compression = false
            let plain = BrokerClient(url: broker.url, configuration: plainConfiguration, logger: quietLogger("plain"))
            try await plain.connect()
            let plainReceived = Received.collect(try await plain.subscribe("c/#", history: 0))
            // No connection negotiated compression: nothing is compressed.
            _ = try await plain.publish("c/big", rawJSON: Self.text)
            try await plainReceived.wait(for: 1)
            let before = await Self.metrics(broker)
            #expect(before["broker_compression_input_bytes_total"] == 0)
            #expect(before["broker_compression_output_bytes_total"] == 0)
            #expect(before["broker_compression_ratio"] == nil)

            let compressing = makeClient(broker.url)
            try await compressing.connect()
            let compressedReceived = Received.collect(try await compressing.subscribe("c/#", history: 0))
            _ = try await plain.publish("c/big", rawJSON: Self.text)
            _ = try await plain.publish("c/small", rawJSON: "1")  // under the threshold: not compressed
            try await compressedReceived.wait(for: 2)
            let after = await Self.metrics(broker)
            let input = try #require(after["broker_compression_input_bytes_total"])
            let output = try #require(after["broker_compression_output_bytes_total"])
            // One shared compressed frame for the big message: its frame is larger than the text,
            // and the repetitive text compresses to a small fraction.
            #expect(input > Double(Self.text.utf8.count) && input < Double(Self.text.utf8.count) + 100)
            #expect(output > 0 && output < input / 5)
            await compressing.close()
            await plain.close()
        }
    }

    @Test func prunedMessagesAreCounted() async throws {
        let journal = MemoryJournal(retention: RetentionPolicy(maxMessagesPerTopic: 1))
        try await TestBroker.with(journal: journal) { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            #expect(await Self.metrics(broker)["broker_journal_pruned_messages_total"] == 0)
            for n in 0..<3 { _ = try await client.publish("p/one", rawJSON: "\(n)", retain: true) }
            _ = try await client.publish("p/two", rawJSON: "1", retain: true)
            // Acked means appended, and the in-memory journal prunes on append: 2 of p/one's 3.
            #expect(await Self.metrics(broker)["broker_journal_pruned_messages_total"] == 2)
            await client.close()
        }
    }

    @Test func aMessageThatInflatesPastTheClientLimitClosesTheConnection() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 4 << 20 }) { broker in
            var configuration = testClientConfiguration()
            configuration.maxMessageBytes = 64 * 1024
            configuration.backoff = Backoff(initial: .seconds(30), maximum: .seconds(30))
            let events = EventLog()
            configuration.onEvent = { events.append($0) }
            let subscriber = BrokerClient(url: broker.url, configuration: configuration, logger: quietLogger("small"))
            try await subscriber.connect()
            let got = Received.collect(try await subscriber.subscribe("bomb", history: 0))
            let publisher = makeClient(broker.url)
            try await publisher.connect()
            // 1 MiB of one byte: a few KiB on the wire, 16 times the subscriber's limit inflated.
            _ = try await publisher.publish("bomb", bytes: [UInt8](repeating: 0, count: 1 << 20))
            // The client closes (WSCompression reports the overflow as 1011) instead of delivering.
            try await eventually("the subscriber to drop the connection", timeout: .seconds(15)) { events.disconnectedCount == 1 }
            #expect(got.messages.isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }
}
