import BrokerClient
import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

/// `BrokerClient` against the real broker (in process, ephemeral port).
@Suite struct ClientIntegrationTests {
    struct Reading: Codable, Equatable {
        var sensor: String
        var celsius: Double
    }

    @Test func connectReceivesTheWelcome() async throws {
        let journal = MemoryJournal()
        try await TestBroker.with(journal: journal, configure: { $0.maxMessageBytes = 4096 }) { broker in
            let client = makeClient(broker.url)
            #expect(!client.isConnected)
            let welcome = try await client.connect()
            #expect(welcome.protocolVersion == 1)
            #expect(welcome.epoch == journal.epoch)
            #expect(!welcome.session.isEmpty)
            #expect(!welcome.server.isEmpty)
            #expect(welcome.maxMessageBytes == 4096)
            #expect(client.isConnected)
            #expect(client.welcome == welcome)
            // connect() again while connected returns the same welcome.
            #expect(try await client.connect() == welcome)
            await client.close()
        }
    }

    @Test func connectToAClosedPortFailsAndCanBeRetried() async throws {
        let port = try unusedPort()
        let client = makeClient("ws://127.0.0.1:\(port)/ws")
        do {
            try await client.connect()
            Issue.record("connect() to a closed port succeeded")
        } catch BrokerClientError.cannotConnect(let url, _) {
            #expect(url.contains(":\(port)/"))
        }
        #expect(!client.isConnected)
        await #expect(throws: BrokerClientError.notConnected) { try await client.ping() }
        await client.close()
    }

    @Test func publishJSONAndBytesReachSubscribersAsTextAndBinary() async throws {
        try await TestBroker.with { broker in
            let subscriber = makeClient(broker.url)
            let publisher = makeClient(broker.url)
            try await subscriber.connect()
            try await publisher.connect()
            let subscription = try await subscriber.subscribe("demo/#", history: 0)
            let received = Received.collect(subscription)

            let ack1 = try await publisher.publish("demo/x", rawJSON: #"{"n":1}"#)
            #expect(ack1.offset == nil)
            let ack2 = try await publisher.publish("demo/y", json: Reading(sensor: "a", celsius: 21.5))
            #expect(ack2.offset == nil)
            let bytes: [UInt8] = [0, 1, 2, 0xFF, 0x80, 10]
            let ack3 = try await publisher.publish("demo/bin", bytes: bytes)
            #expect(ack3.offset == nil)
            _ = try await publisher.publish("demo/empty", bytes: [UInt8]())
            _ = try await publisher.publish("demo/s", rawJSON: #""héllo \"q\"""#)

            try await received.wait(for: 5)
            let messages = received.messages
            #expect(messages.map(\.topic) == ["demo/x", "demo/y", "demo/bin", "demo/empty", "demo/s"])
            #expect(messages[0].json == #"{"n":1}"#)
            #expect(!messages[0].isBinary && messages[0].offset == nil && !messages[0].replay)
            #expect(try messages[1].decode(Reading.self) == Reading(sensor: "a", celsius: 21.5))
            #expect(messages[2].isBinary)
            #expect(messages[2].bytes == bytes)
            #expect(messages[2].json == nil)
            #expect(messages[3].isBinary && messages[3].bytes.isEmpty)
            #expect(messages[4].string == #"héllo "q""#)
            #expect(messages[0].jsonLine == #"{"topic":"demo/x","data":{"n":1}}"#)
            #expect(messages[2].jsonLine == #"{"topic":"demo/bin","binary":"AAEC/4AK"}"#)

            await publisher.close()
            await subscriber.close()
            try await eventually("the subscription to finish after close()") { received.finished }
            #expect(received.error == nil)
        }
    }

    @Test func wildcardsMatchAsTheProtocolSays() async throws {
        try await TestBroker.with { broker in
            let subscriber = makeClient(broker.url)
            try await subscriber.connect()
            let plus = Received.collect(try await subscriber.subscribe("w/+/temp", history: 0))
            let hash = Received.collect(try await subscriber.subscribe("w/#", history: 0))
            let all = Received.collect(try await subscriber.subscribe("#", history: 0))
            let exact = Received.collect(try await subscriber.subscribe("w/a/temp", history: 0))

            let publisher = makeClient(broker.url)
            try await publisher.connect()
            for topic in ["w/a/temp", "w/b/temp", "w/a/hum", "w", "w/a/temp/deep", "x/a/temp", "w//temp"] {
                _ = try await publisher.publish(topic, rawJSON: #""\#(topic)""#)
            }
            _ = try await publisher.publish("end", bytes: [1])
            // The client hands each delivery to its matching subscriptions in arrival order, so
            // once "#" has "end", every other subscription has been given all it will get; closing
            // finishes each subscription behind what it was given, so once all four finished,
            // each has collected everything.
            try await all.wait(for: 8)
            await subscriber.close()
            try await eventually("every subscription to finish") {
                [plus, hash, all, exact].allSatisfy(\.finished)
            }

            #expect(plus.messages.map(\.topic) == ["w/a/temp", "w/b/temp", "w//temp"])
            #expect(hash.messages.map(\.topic) == ["w/a/temp", "w/b/temp", "w/a/hum", "w", "w/a/temp/deep", "w//temp"])
            #expect(all.messages.map(\.topic) == ["w/a/temp", "w/b/temp", "w/a/hum", "w", "w/a/temp/deep", "x/a/temp", "w//temp", "end"])
            #expect(exact.messages.map(\.topic) == ["w/a/temp"])
            #expect(all.messages.last?.isBinary == true)
            await publisher.close()
        }
    }

    @Test func retainedPublishesAreAckedWithOffsetsAndReplayed() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let journal = try openJournal(directory)
        try await TestBroker.with(journal: journal) { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            var offsets: [UInt64] = []
            for n in 1...3 {
                let ack = try await client.publish("r/a", rawJSON: "\(n)", retain: true)
                offsets.append(try #require(ack.offset))
            }
            let binaryAck = try await client.publish("r/b", bytes: [9, 8, 7], retain: true)
            offsets.append(try #require(binaryAck.offset))
            #expect(offsets == offsets.sorted() && Set(offsets).count == 4)
            #expect(offsets[0] >= 1)
            #expect(try await client.publish("r/a", rawJSON: "0").offset == nil)  // not retained

            // history: 2 replays the newest two of each topic, oldest first, marked as replay.
            let history = Received.collect(try await client.subscribe("r/#", history: 2))
            try await history.wait(for: 3)
            let replayed = history.messages
            #expect(replayed.allSatisfy { $0.replay })
            #expect(Set(replayed.map { "\($0.topic)@\($0.offset ?? 0)" })
                == ["r/a@\(offsets[1])", "r/a@\(offsets[2])", "r/b@\(offsets[3])"])
            let replayedA = replayed.filter { $0.topic == "r/a" }
            #expect(replayedA.map(\.json) == ["2", "3"])
            #expect(replayed.first { $0.topic == "r/b" }?.bytes == [9, 8, 7])

            // since: everything retained after an offset, in offset order.
            let since = Received.collect(try await client.subscribe("r/+", since: offsets[0]))
            try await since.wait(for: 3)
            #expect(since.messages.map(\.offset) == Array(offsets[1...]))

            // A live retained message arrives once on each subscription, with its offset, not as replay.
            let live = try await client.publish("r/a", rawJSON: "4", retain: true)
            let liveOffset = try #require(live.offset)
            #expect(liveOffset > offsets[3])
            let fromHistory = try await history.wait(for: "the live retained message") { $0.offset == liveOffset }
            #expect(!fromHistory.replay && fromHistory.json == "4")
            try await since.wait(for: "the live retained message") { $0.offset == liveOffset }
            #expect(history.count == 4 && since.count == 4)

            // history: 0 replays nothing.
            let none = Received.collect(try await client.subscribe("r/a", history: 0))
            _ = try await client.publish("r/a", rawJSON: "5")
            try await none.wait(for: 1)
            #expect(none.messages.map(\.json) == ["5"])
            await client.close()
        }
        await journal.close()
    }

    @Test func errorRepliesSurfaceAsServerErrors() async throws {
        try await TestBroker.with(configure: { $0.maxTopicBytes = 16 }) { broker in
            let client = makeClient(broker.url)
            try await client.connect()

            // Reserved topics: refused by the broker, for text and binary publishes.
            await #expect(throws: BrokerClientError.self) { try await client.publish("$x", rawJSON: "1") }
            do {
                _ = try await client.publish("$sys/x", rawJSON: "1")
                Issue.record("publish to $sys/x succeeded")
            } catch let error as BrokerClientError {
                #expect(error.serverCode == .forbidden, "\(error)")
            }
            do {
                _ = try await client.publish("$x", bytes: [1, 2])
                Issue.record("binary publish to $x succeeded")
            } catch let error as BrokerClientError {
                #expect(error.serverCode == .forbidden, "\(error)")
            }

            // A topic longer than this broker's limit (16) passes the client's default check
            // (256) and is refused by the broker.
            let long = String(repeating: "a", count: 17)
            do {
                _ = try await client.publish(long, rawJSON: "1")
                Issue.record("publish to a 17-byte topic succeeded")
            } catch let error as BrokerClientError {
                #expect(error.serverCode == .invalidTopic, "\(error)")
            }
            do {
                _ = try await client.subscribe(long + "/#")
                Issue.record("subscribe to a long filter succeeded")
            } catch let error as BrokerClientError {
                #expect(error.serverCode == .invalidTopic, "\(error)")
            }

            // Malformed names and filters are refused locally, before anything is sent.
            for bad in ["a/+", "a/#", "", "a\0b"] {
                do {
                    _ = try await client.publish(bad, rawJSON: "1")
                    Issue.record("publish to \(bad.debugDescription) succeeded")
                } catch BrokerClientError.invalidTopic {}
            }
            for bad in ["a/#/b", "a+/b", "#/a", ""] {
                do {
                    _ = try await client.subscribe(bad)
                    Issue.record("subscribe to \(bad.debugDescription) succeeded")
                } catch BrokerClientError.invalidTopic {}
            }
            do {
                _ = try await client.publish("t", rawJSON: "{not json")
                Issue.record("publishing invalid JSON succeeded")
            } catch BrokerClientError.invalidJSON {}

            // The connection survived every refusal.
            #expect(client.isConnected)
            try await client.ping()
            let ok = Received.collect(try await client.subscribe("ok", history: 0))
            _ = try await client.publish("ok", rawJSON: "true")
            try await ok.wait(for: 1)
            await client.close()
        }
    }

    @Test func oversizePublishIsRefusedBeforeSending() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 1024 }) { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            do {
                _ = try await client.publish("big", bytes: [UInt8](repeating: 7, count: 2000))
                Issue.record("an oversize publish succeeded")
            } catch BrokerClientError.tooLarge(_, let limit) {
                #expect(limit == 1024)
            }
            #expect(client.isConnected)
            _ = try await client.publish("small", bytes: [UInt8](repeating: 7, count: 500))
            await client.close()
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await TestBroker.with { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            let subscription = try await client.subscribe("u/#", history: 0)
            let first = Received.collect(subscription)
            let marker = Received.collect(try await client.subscribe("marker", history: 0))

            let publisher = makeClient(broker.url)
            try await publisher.connect()
            _ = try await publisher.publish("u/1", rawJSON: "1")
            try await first.wait(for: 1)

            try await subscription.unsubscribe()
            try await eventually("the subscription to finish after unsubscribe()") { first.finished }
            #expect(first.error == nil)
            _ = try await publisher.publish("u/2", rawJSON: "2")
            _ = try await publisher.publish("marker", rawJSON: "0")
            try await marker.wait(for: 1)
            #expect(first.messages.map(\.topic) == ["u/1"])
            try await subscription.unsubscribe()  // idempotent

            // Subscribing again gets only what is published from then on.
            let again = Received.collect(try await client.subscribe("u/#", history: 0))
            _ = try await publisher.publish("u/3", rawJSON: "3")
            try await again.wait(for: 1)
            _ = try await publisher.publish("marker", rawJSON: "1")
            try await marker.wait(for: 2)
            #expect(again.messages.map(\.topic) == ["u/3"])

            // Unsubscribing one of two subscriptions of the same filter keeps the other going.
            let twinA = try await client.subscribe("twin", history: 0)
            let twinB = Received.collect(try await client.subscribe("twin", history: 0))
            try await client.unsubscribe(twinA)
            _ = try await publisher.publish("twin", rawJSON: "1")
            try await twinB.wait(for: 1)
            await publisher.close()
            await client.close()
        }
    }

    @Test func pingAndClose() async throws {
        try await TestBroker.with { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            let rtt = try await client.ping()
            #expect(rtt > .zero)  // bounded above by the request timeout: ping() throws past it
            for _ in 0..<5 { try await client.ping() }
            let received = Received.collect(try await client.subscribe("c", history: 0))

            await client.close()
            #expect(!client.isConnected)
            try await eventually("the subscription to finish") { received.finished }
            #expect(received.error == nil)
            await #expect(throws: BrokerClientError.closed) { try await client.ping() }
            await #expect(throws: BrokerClientError.closed) { try await client.publish("c", rawJSON: "1") }
            await #expect(throws: BrokerClientError.closed) { try await client.subscribe("c") }
            await #expect(throws: BrokerClientError.closed) { try await client.connect() }
            await client.close()  // idempotent
            try await eventually("the broker to see the connection closed") {
                await broker.server.openConnections() == 0
            }
        }
    }

    @Test func concurrentRequestsAreMatchedToTheirReplies() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let journal = try openJournal(directory)
        try await TestBroker.with(journal: journal) { broker in
            let client = makeClient(broker.url)
            try await client.connect()
            let received = Received.collect(try await client.subscribe("many/#", history: 0))
            let offsets = try await withThrowingTaskGroup(of: UInt64?.self) { group in
                for n in 0..<50 {
                    group.addTask {
                        switch n % 3 {
                        case 0: return try await client.publish("many/\(n % 5)", rawJSON: "\(n)", retain: true).offset
                        case 1: return try await client.publish("many/\(n % 5)", bytes: [UInt8(n)]).offset
                        default:
                            try await client.ping()
                            return nil
                        }
                    }
                }
                var offsets: [UInt64] = []
                for try await offset in group { if let offset { offsets.append(offset) } }
                return offsets
            }
            #expect(offsets.count == 17 && Set(offsets).count == 17)
            // Each delivery reached the client before its publish's ack (a retained one is
            // delivered before it is acked, a live one before the reply is written), and the
            // client hands frames on in arrival order: every delivery has been given to the
            // subscription. Closing finishes it behind them, and then nothing more can come.
            await client.close()
            try await eventually("the subscription to finish") { received.finished }
            #expect(received.count == 34, "\(received.messages.map(\.summary))")
        }
        await journal.close()
    }
}
