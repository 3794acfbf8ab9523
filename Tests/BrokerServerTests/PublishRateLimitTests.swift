import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// `limits.publish-rate`: the token bucket alone, then on a connection whose loop's clock the
/// test moves (EmbeddedEventLoop): over the rate a publish gets `rate_limited` with its id and is
/// dropped, and the connection stays open.
@Suite struct PublishRateLimitTests {
    @Test func theBucketStartsFullRefillsWithTimeAndHoldsNoMoreThanTheRate() {
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        let bucket = PublishRateLimiter(rate: 4, now: start)
        for _ in 0..<4 {
            let taken = bucket.take(now: start)
            #expect(taken)
        }
        let fifth = bucket.take(now: start)
        #expect(!fifth)
        // One token every 250 ms.
        let early = bucket.take(now: start + .milliseconds(249))
        #expect(!early)
        let onTime = bucket.take(now: start + .milliseconds(250))
        #expect(onTime)
        // A long pause refills the burst, no more.
        let later = start + .seconds(3_600)
        var taken = 0
        while bucket.take(now: later) { taken += 1 }
        #expect(taken == 4)
    }

    @Test func aClockThatDoesNotMoveForwardGivesNothing() {
        let start = NIODeadline.uptimeNanoseconds(5_000_000_000)
        let bucket = PublishRateLimiter(rate: 1, now: start)
        let first = bucket.take(now: start)
        let earlier = bucket.take(now: start - .seconds(10))
        #expect(first && !earlier)
    }

    @Test func publishesOverTheRateAreRefusedWithTheirIDAndDropped() throws {
        let harness = LimitsHarness { $0.publishRate = 2 }
        let subscriber = try harness.connect()
        let publisher = try harness.connect()
        try subscriber.send(#"{"op":"subscribe","topic":"t","history":0}"#)
        harness.loop.run()
        _ = try subscriber.texts()

        for id in 1...3 { try publisher.send(#"{"op":"publish","topic":"t","data":\#(id),"id":\#(id)}"#) }
        harness.loop.run()
        let replies = try publisher.texts()
        #expect(replies.count == 3)
        #expect(replies[0] == #"{"op":"ack","id":1}"#)
        #expect(replies[1] == #"{"op":"ack","id":2}"#)
        #expect(replies[2].hasPrefix(#"{"op":"error","code":"rate_limited""#) && replies[2].hasSuffix(#""id":3}"#))
        // Dropped: the subscriber got the first two only.
        #expect(try subscriber.texts() == [#"{"op":"message","topic":"t","data":1}"#, #"{"op":"message","topic":"t","data":2}"#])
        #expect(publisher.channel.isActive)

        // Half a second later (the loop's clock), one more token.
        harness.loop.advanceTime(by: .milliseconds(499))
        try publisher.send(#"{"op":"publish","topic":"t","data":4,"id":4}"#)
        harness.loop.advanceTime(by: .milliseconds(1))
        try publisher.send(#"{"op":"publish","topic":"t","data":5,"id":5}"#)
        try publisher.send(#"{"op":"publish","topic":"t","data":6,"id":6,"retain":true}"#)
        harness.loop.run()
        let later = try publisher.texts()
        #expect(later.count == 3)
        #expect(later[0].contains(#""code":"rate_limited""#) && later[0].hasSuffix(#""id":4}"#))
        #expect(later[1] == #"{"op":"ack","id":5}"#)
        #expect(later[2].contains(#""code":"rate_limited""#) && later[2].hasSuffix(#""id":6}"#))
        #expect(harness.journal.pendingCount == 0)  // the refused retained publish never reached the journal
        #expect(try subscriber.texts() == [#"{"op":"message","topic":"t","data":5}"#])
    }

    @Test func binaryPublishesOverTheRateGetATextError() throws {
        let harness = LimitsHarness { $0.publishRate = 1 }
        let publisher = try harness.connect()
        // kind 1, flags: ack, topic "t", id 7, then 8.
        try publisher.sendBinary([0x01, 0x02, 0x00, 0x01, 0x74, 0, 0, 0, 7, 0xAA])
        try publisher.sendBinary([0x01, 0x02, 0x00, 0x01, 0x74, 0, 0, 0, 8, 0xBB])
        harness.loop.run()
        let replies = try publisher.texts()
        #expect(replies.count == 2)
        #expect(replies[0] == #"{"op":"ack","id":7}"#)
        #expect(replies[1].hasPrefix(#"{"op":"error","code":"rate_limited""#) && replies[1].hasSuffix(#""id":8}"#))
        #expect(publisher.channel.isActive)
    }

    @Test func zeroMeansNoLimit() throws {
        let harness = LimitsHarness { $0.publishRate = 0 }
        let publisher = try harness.connect()
        for id in 1...500 { try publisher.send(#"{"op":"publish","topic":"t","data":0,"id":\#(id)}"#) }
        harness.loop.run()
        let replies = try publisher.texts()
        #expect(replies.count == 500 && replies.allSatisfy { $0.hasPrefix(#"{"op":"ack""#) })
    }
}
