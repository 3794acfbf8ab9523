import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import Logging
import NIOCore
import Testing

@testable import BrokerServer

/// Retained messages end to end: the real broker on the SQLite journal in a temporary directory.
@Suite(.serialized) struct RetainedIntegrationTests {
    static func openJournal(_ directory: String, maxPerTopic: Int = 1_000) throws -> SQLiteJournal {
        var configuration = JournalConfiguration()
        configuration.retention.maxMessagesPerTopic = maxPerTopic
        var logger = Logger(label: "test-journal")
        logger.logLevel = .warning
        return try SQLiteJournal.open(directory: directory, configuration: configuration, logger: logger)
    }

    func publishRetained(_ client: RawWebSocketClient, _ topic: String, _ data: String, id: Int) async throws -> UInt64 {
        try await client.sendText(#"{"op":"publish","topic":"\#(topic)","data":\#(data),"retain":true,"id":\#(id)}"#)
        while true {
            switch try await client.nextMessage() {
            case .ack(_, let offset?): return offset
            case .error(let code, let message, _): throw RawWebSocketClient.ClientError.handshake("\(code): \(message)")
            default: continue
            }
        }
    }

    /// Subscribes and collects the `subscribed` reply and the replayed messages (until a ping
    /// sent after the subscribe is answered, which comes after the replay).
    func subscribe(_ client: RawWebSocketClient, _ fields: String) async throws -> (recovered: Bool?, messages: [Delivery]) {
        try await client.sendText(#"{"op":"subscribe",\#(fields)}"#)
        var recovered: Bool?
        var messages: [Delivery] = []
        var subscribed = false
        while true {
            switch try await client.nextMessage() {
            case .subscribed(_, _, let value):
                recovered = value
                subscribed = true
                try await client.sendText(#"{"op":"ping","id":"end"}"#)
            case .message(let delivery):
                #expect(subscribed, "replayed message before subscribed")
                messages.append(delivery)
            case .pong:
                return (recovered, messages)
            case let other:
                throw RawWebSocketClient.ClientError.handshake("unexpected \(other)")
            }
        }
    }

    @Test func historyAndSinceReplayOverWildcards() async throws {
        let directory = temporaryDirectory()
        let journal = try Self.openJournal(directory)
        try await TestBroker.with(journal: journal) { broker in
            let publisher = try await broker.client()
            var offsets: [String: [UInt64]] = [:]
            for n in 1...3 {
                for topic in ["sensors/a/temp", "sensors/b/temp", "other/x"] {
                    offsets[topic, default: []].append(try await publishRetained(publisher, topic, "\(n)", id: n))
                }
            }

            // Default history 1: the last value of each matching topic, flagged replay.
            let last = try await subscribe(try await broker.client(), #""topic":"sensors/+/temp""#)
            #expect(last.recovered == nil)
            #expect(last.messages.map(\.topic).sorted() == ["sensors/a/temp", "sensors/b/temp"])
            #expect(last.messages.allSatisfy { $0.replay && String(buffer: $0.payload) == "3" })

            // history 2: the newest two per topic, each topic oldest first.
            let two = try await subscribe(try await broker.client(), #""topic":"sensors/a/#","history":2"#)
            #expect(two.messages.map { String(buffer: $0.payload) } == ["2", "3"])
            #expect(two.messages.map(\.offset) == offsets["sensors/a/temp"]!.suffix(2).map(Optional.some))

            // since: everything after S across topics, in offset order, recovered.
            let cut = offsets["sensors/a/temp"]![0]
            let since = try await subscribe(try await broker.client(), ##""topic":"#","since":\##(cut),"epoch":"\##(journal.epoch)""##)
            #expect(since.recovered == true)
            let replayed = since.messages.compactMap(\.offset)
            #expect(replayed == replayed.sorted())
            #expect(replayed.count == 8 && replayed.allSatisfy { $0 > cut })

            // history 0 replays nothing.
            let none = try await subscribe(try await broker.client(), ##""topic":"#","history":0"##)
            #expect(none.messages.isEmpty)

            // Another epoch: since is ignored, the current state is replayed, recovered false.
            let stale = try await subscribe(try await broker.client(), #""topic":"other/x","since":1,"epoch":"not-this-one""#)
            #expect(stale.recovered == false)
            #expect(stale.messages.map { String(buffer: $0.payload) } == ["3"])
        }
        await journal.close()
    }

    @Test func sinceAfterPruningIsNotRecovered() async throws {
        let directory = temporaryDirectory()
        let journal = try Self.openJournal(directory, maxPerTopic: 2)
        try await TestBroker.with(journal: journal) { broker in
            let publisher = try await broker.client()
            for n in 1...5 { _ = try await publishRetained(publisher, "t", "\(n)", id: n) }
            // Pruning runs in the background on the writer; have it applied now.
            await journal.applyRetention()
            let result = try await subscribe(try await broker.client(), #""topic":"t","since":0"#)
            #expect(result.recovered == false)
            #expect(result.messages.map { String(buffer: $0.payload) } == ["4", "5"])
            let recent = try await subscribe(try await broker.client(), #""topic":"t","since":4"#)
            #expect(recent.recovered == true)
            #expect(recent.messages.map { String(buffer: $0.payload) } == ["5"])
        }
        await journal.close()
    }

    @Test func oneConnectionsRetainedAndLivePublishesKeepTheirOrder() async throws {
        let journal = try Self.openJournal(temporaryDirectory())
        try await TestBroker.with(journal: journal) { broker in
            let subscriber = try await broker.client()
            _ = try await subscribe(subscriber, #""topic":"order","history":0"#)
            let publisher = try await broker.client()
            for n in 0..<200 {
                let retain = n % 3 == 0 ? "true" : "false"
                try await publisher.sendText(#"{"op":"publish","topic":"order","data":\#(n),"retain":\#(retain)}"#)
            }
            var seen: [Int] = []
            while seen.count < 200 {
                if case .message(let delivery) = try await subscriber.nextMessage() {
                    seen.append(Int(String(buffer: delivery.payload))!)
                }
            }
            #expect(seen == Array(0..<200))
        }
        await journal.close()
    }

    /// Sends retained publishes `range` on `publishers` in turn, topic `topic(n)`; the last of
    /// each publisher's share carries an id, and with `acked` this waits for those acks (so the
    /// whole range is in the journal).
    func storm(
        _ range: Range<Int>, on publishers: [RawWebSocketClient], acked: Bool = false, topic: (Int) -> String
    ) async throws {
        for n in range {
            let id = acked && n >= range.upperBound - publishers.count ? #","id":\#(n)"# : ""
            try await publishers[n % publishers.count].sendText(
                #"{"op":"publish","topic":"\#(topic(n))","data":\#(n),"retain":true\#(id)}"#)
        }
        guard acked else { return }
        for publisher in publishers where range.count >= publishers.count {
            while true {
                if case .ack = try await publisher.nextMessage(timeout: .seconds(20)) { break }
            }
        }
    }

    /// A subscribe with replay during a storm of retained publishes, in three phases that do
    /// not depend on timing: publishes in the journal before the subscribe is sent (replayed),
    /// publishes sent while the subscribe is on its way and being set up (either side of its
    /// snapshot: the race under test), and publishes sent after `subscribed` came back (live:
    /// the snapshot was queued before them).
    func stormAroundSubscribe(
        _ broker: TestBroker, publishers: [RawWebSocketClient], total: Int, subscribe request: String,
        topic: @escaping @Sendable (Int) -> String
    ) async throws -> RawWebSocketClient {
        let third = total / 3
        try await storm(0..<third, on: publishers, acked: true, topic: topic)
        let subscriber = try await broker.client()
        try await subscriber.sendText(request)
        let racing = Task { try await storm(third..<2 * third, on: publishers, topic: topic) }
        guard case .subscribed(_, _, let recovered) = try await subscriber.nextMessage(timeout: .seconds(20)) else {
            racing.cancel()
            throw RawWebSocketClient.ClientError.handshake("subscribed does not come first")
        }
        #expect(recovered != false)
        let late = try await broker.client()
        try await storm(2 * third..<total, on: [late], topic: topic)
        try await racing.value
        return subscriber
    }

    @Test func replayAndLiveMeetWithoutGapOrDuplicateUnderAPublishStorm() async throws {
        let journal = try Self.openJournal(temporaryDirectory(), maxPerTopic: 100_000)
        try await TestBroker.with(journal: journal) { broker in
            let total = 3_000
            let publishers = [try await broker.client(), try await broker.client()]
            let subscriber = try await stormAroundSubscribe(
                broker, publishers: publishers, total: total, subscribe: #"{"op":"subscribe","topic":"storm/#","since":0}"#,
                topic: { "storm/\($0 % 7)" })
            var offsets: [UInt64] = []
            var replayed = 0
            while offsets.count < total {
                if case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(20)) {
                    offsets.append(delivery.offset!)
                    if delivery.replay { replayed += 1 }
                }
            }
            // Offsets are broker-wide: every one from 1 to total, once, in order.
            #expect(offsets == Array(1...UInt64(total)))
            // At least the first phase was replayed, at least the last came live.
            #expect(replayed >= total / 3 && replayed <= total - total / 3, "\(replayed) replayed")
        }
        await journal.close()
    }

    @Test func historyReplayDuringAStormHandsOverInOffsetOrder() async throws {
        let journal = try Self.openJournal(temporaryDirectory(), maxPerTopic: 100_000)
        try await TestBroker.with(journal: journal) { broker in
            let total = 2_000
            let subscriber = try await stormAroundSubscribe(
                broker, publishers: [try await broker.client()], total: total,
                subscribe: #"{"op":"subscribe","topic":"one","history":1}"#, topic: { _ in "one" })
            var offsets: [UInt64] = []
            var replayed = 0
            while offsets.last != UInt64(total) {
                if case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(20)) {
                    offsets.append(delivery.offset!)
                    if delivery.replay { replayed += 1 }
                }
            }
            // The last value at the snapshot, then every later one: consecutive, no duplicate.
            #expect(replayed == 1)
            #expect(offsets[0] >= UInt64(total / 3), "the first phase was in the journal before the subscribe")
            #expect(offsets == Array(offsets[0]...UInt64(total)))
        }
        await journal.close()
    }

    @Test func restartKeepsRetainedMessagesAndOffsetsContinue() async throws {
        let directory = temporaryDirectory()
        var journal = try Self.openJournal(directory)
        let epoch = journal.epoch
        var lastOffset: UInt64 = 0
        try await TestBroker.with(journal: journal) { broker in
            let publisher = try await broker.client()
            for n in 1...10 { lastOffset = try await publishRetained(publisher, "keep/\(n % 3)", "\(n)", id: n) }
        }
        await journal.close()

        journal = try Self.openJournal(directory)
        #expect(journal.epoch == epoch)
        try await TestBroker.with(journal: journal) { broker in
            let result = try await subscribe(try await broker.client(), #""topic":"keep/#","since":0,"epoch":"\#(epoch)""#)
            #expect(result.recovered == true)
            #expect(result.messages.map { String(buffer: $0.payload) } == (1...10).map(String.init))
            let next = try await publishRetained(try await broker.client(), "keep/new", "11", id: 11)
            #expect(next > lastOffset)
        }
        await journal.close()
    }
}
