import Foundation
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// `$sys/broker/stats` on the loop's clock: published every interval through the normal fan-out,
/// to subscribers of `$sys/…` filters only, and not counted as a publish received.
@Suite struct SysStatsPublisherTests {
    @Test func publishesTheStatsEveryIntervalToSysSubscribers() async throws {
        let harness = try await AdminHarness()
        let (watcher, _) = try harness.connect(port: 1)
        try watcher.sendClientText(#"{"op":"subscribe","topic":"$sys/broker/stats","history":0}"#)
        let (everything, _) = try harness.connect(port: 2)
        try everything.sendClientText(##"{"op":"subscribe","topic":"#","history":0}"##)
        harness.loop.run()
        _ = try watcher.readServerFrames()
        _ = try everything.readServerFrames()

        let task = SysStatsPublisher.start(harness.broker, every: .seconds(1))
        harness.loop.advanceTime(by: .seconds(1) - .nanoseconds(1))
        #expect(try watcher.readServerFrames().isEmpty)
        harness.loop.advanceTime(by: .nanoseconds(1))
        harness.loop.run()
        let first = try #require(try watcher.readServerFrames().first)
        let message = try #require(try JSONSerialization.jsonObject(with: Data(first.text.utf8)) as? [String: Any])
        #expect(message["op"] as? String == "message" && message["topic"] as? String == "$sys/broker/stats")
        let stats = try #require(message["data"] as? [String: Any])
        #expect(stats["connections"] as? Int == 2 && stats["subscriptions"] as? Int == 2)
        #expect(stats["messagesIn"] as? Int == 0)  // its own publishes are not counted
        #expect(stats["journal"] is [String: Any] && stats["rates"] is [String: Any])
        #expect(try everything.readServerFrames().isEmpty)  // `#` does not match `$` topics

        // A publish between two figures shows in the next one's rate.
        let (publisher, _) = try harness.connect(port: 3)
        try publisher.sendClientText(#"{"op":"publish","topic":"a","data":1}"#)
        harness.loop.advanceTime(by: .seconds(1))
        harness.loop.run()
        let second = try #require(try watcher.readServerFrames().first)
        #expect(second.text.contains(#""messagesIn":1,"#) && second.text.contains(#""rates":{"messagesIn":1.000,"#), "\(second.text)")

        task.cancel()
        harness.loop.advanceTime(by: .seconds(5))
        harness.loop.run()
        #expect(try watcher.readServerFrames().isEmpty)
    }
}
