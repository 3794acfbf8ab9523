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
            var plainConfiguration = BrokerClient.Configuration()
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

    @Test func aMessageThatInflatesPastTheClientLimitClosesTheConnection() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 4 << 20 }) { broker in
            var configuration = BrokerClient.Configuration()
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
