import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// The hand-off from the journal writer to the event loops (JournalOutbox.swift), on embedded
/// loops with a journal that commits when the test says: a publisher's retained and plain
/// messages keep their order everywhere, an ack follows the message it acknowledges, and a
/// subscriber that joins while a commit is pending gets every message exactly once.
@Suite struct JournalHandOffTests {
    final class Client {
        let channel: EmbeddedChannel
        init(_ channel: EmbeddedChannel) { self.channel = channel }

        func send(_ text: String) throws { try channel.sendClientText(text) }

        /// Text frames written since the last call.
        func texts() throws -> [String] {
            try channel.readServerFrames().filter { $0.opcode == 0x1 }.map(\.text)
        }
    }

    struct Harness {
        let loops: [EmbeddedEventLoop]
        let journal = HeldJournal()
        let broker: Broker

        init(loops count: Int) {
            loops = (0..<count).map { _ in EmbeddedEventLoop() }
            var configuration = BrokerConfiguration()
            configuration.maxFlushDelay = .zero
            broker = Broker(configuration: configuration, journal: journal, eventLoops: loops, logger: Logger(label: "test"))
        }

        /// A connection on loop `index`, its welcome read.
        func connect(on index: Int) throws -> Client {
            let channel = EmbeddedChannel(loop: loops[index])
            try channel.pipeline.syncOperations.addHandler(
                WebSocketConnection(broker: broker, shard: broker.shards[index], mode: .broker))
            let client = Client(channel)
            loops[index].run()
            #expect(try client.texts().first?.hasPrefix(#"{"op":"welcome""#) == true)
            return client
        }

        func runAll() { for loop in loops { loop.run() } }
    }

    @Test func onePublishersRetainedAndPlainMessagesKeepTheirOrderOnEveryLoop() throws {
        let harness = Harness(loops: 2)
        let publisher = try harness.connect(on: 0)
        let near = try harness.connect(on: 0)
        let far = try harness.connect(on: 1)
        for subscriber in [near, far] {
            try subscriber.send(##"{"op":"subscribe","topic":"t/#","history":0}"##)
        }
        harness.runAll()
        #expect(try near.texts() == [#"{"op":"subscribed","topic":"t/#"}"#])
        #expect(try far.texts() == [#"{"op":"subscribed","topic":"t/#"}"#])

        try publisher.send(#"{"op":"publish","topic":"t/a","data":1,"retain":true,"id":1}"#)
        try publisher.send(#"{"op":"publish","topic":"t/b","data":2}"#)
        try publisher.send(#"{"op":"publish","topic":"t/a","data":3,"retain":true,"id":2}"#)
        try publisher.send(#"{"op":"publish","topic":"t/b","data":4,"id":3}"#)
        harness.runAll()
        // The plain messages wait behind the uncommitted retained ones.
        #expect(try near.texts().isEmpty && far.texts().isEmpty && publisher.texts().isEmpty)

        harness.journal.commit()
        harness.runAll()
        let expected = [
            #"{"op":"message","topic":"t/a","data":1,"offset":1}"#,
            #"{"op":"message","topic":"t/b","data":2}"#,
            #"{"op":"message","topic":"t/a","data":3,"offset":2}"#,
            #"{"op":"message","topic":"t/b","data":4}"#,
        ]
        #expect(try near.texts() == expected)
        #expect(try far.texts() == expected)
        #expect(try publisher.texts() == [
            #"{"op":"ack","id":1,"offset":1}"#, #"{"op":"ack","id":2,"offset":2}"#, #"{"op":"ack","id":3}"#,
        ])
    }

    @Test func anAckFollowsItsMessageOnEveryLoop() throws {
        let harness = Harness(loops: 2)
        let publisher = try harness.connect(on: 0)
        let far = try harness.connect(on: 1)
        try publisher.send(##"{"op":"subscribe","topic":"#","history":0}"##)
        try far.send(##"{"op":"subscribe","topic":"#","history":0}"##)
        harness.runAll()
        _ = try publisher.texts()
        _ = try far.texts()

        try publisher.send(#"{"op":"publish","topic":"x","data":1,"retain":true,"id":1}"#)
        harness.journal.commit()
        // Only the publisher's loop runs: it sees its message, then the ack.
        harness.loops[0].run()
        #expect(try publisher.texts() == [#"{"op":"message","topic":"x","data":1,"offset":1}"#, #"{"op":"ack","id":1,"offset":1}"#])
        // Acknowledged, it publishes again (plain, straight to the loops): on the other loop the
        // acknowledged message was already queued ahead of it.
        try publisher.send(#"{"op":"publish","topic":"x","data":2}"#)
        harness.loops[1].run()
        #expect(try far.texts() == [#"{"op":"message","topic":"x","data":1,"offset":1}"#, #"{"op":"message","topic":"x","data":2}"#])
    }

    @Test(arguments: [##""since":0"##, ##""history":1"##])
    func aSubscriberJoiningMidCommitGetsEveryMessageOnce(_ replay: String) throws {
        let harness = Harness(loops: 2)
        let publisher = try harness.connect(on: 0)
        let subscriber = try harness.connect(on: 1)
        try publisher.send(#"{"op":"publish","topic":"t/x","data":1,"retain":true}"#)
        harness.journal.commit()
        harness.runAll()
        // Offset 2 is handed to the writer, then the subscriber asks for its replay, then offset
        // 3 follows, and the writer commits all three requests in one group.
        try publisher.send(#"{"op":"publish","topic":"t/x","data":2,"retain":true}"#)
        try subscriber.send(#"{"op":"subscribe","topic":"t/#",\#(replay)}"#)
        harness.runAll()
        try publisher.send(#"{"op":"publish","topic":"t/x","data":3,"retain":true}"#)
        #expect(harness.journal.pendingCount == 3)
        harness.journal.commit()
        for _ in 0..<4 { harness.runAll() }  // the snapshot, then each replay read, a tick each

        let texts = try subscriber.texts()
        if replay.contains("since") {
            #expect(texts == [
                #"{"op":"subscribed","topic":"t/#","recovered":true}"#,
                #"{"op":"message","topic":"t/x","data":1,"offset":1,"replay":true}"#,
                #"{"op":"message","topic":"t/x","data":2,"offset":2,"replay":true}"#,
                #"{"op":"message","topic":"t/x","data":3,"offset":3}"#,
            ])
        } else {
            // The newest up to the snapshot, then what came after it, live.
            #expect(texts == [
                #"{"op":"subscribed","topic":"t/#"}"#,
                #"{"op":"message","topic":"t/x","data":2,"offset":2,"replay":true}"#,
                #"{"op":"message","topic":"t/x","data":3,"offset":3}"#,
            ])
        }
    }
}
