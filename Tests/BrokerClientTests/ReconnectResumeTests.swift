import BrokerClient
import BrokerJournal
import BrokerTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

/// Reconnect and resume across a restart of the real broker on the same port.
@Suite struct ReconnectResumeTests {
    /// Offsets acknowledged to publishers, per topic.
    final class Acked: Sendable {
        private let box = NIOLockedValueBox<[String: [UInt64]]>([:])
        func add(_ topic: String, _ offset: UInt64?) {
            guard let offset else { return }
            box.withLockedValue { $0[topic, default: []].append(offset) }
        }
        var byTopic: [String: [UInt64]] { box.withLockedValue { $0 } }
        var all: Set<String> {
            Set(byTopic.flatMap { topic, offsets in offsets.map { "\(topic)@\($0)" } })
        }
        var count: Int { byTopic.values.map(\.count).reduce(0, +) }
    }

    @Test func retainedSubscriptionResumesAcrossARestartExactlyOnce() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        var journal = try openJournal(directory)
        let epoch = journal.epoch
        let first = try await TestBroker.start(journal: journal)
        let port = first.port
        let events = EventLog()
        // The subscriber comes back only after 600 ms, when the broker is up again and (normally)
        // the messages of the outage have been retained without it: it must fetch them with
        // `since` (with `history: 1` it would lose some).
        let subscriber = makeClient(
            first.url, events: events, backoff: Backoff(initial: .milliseconds(600), maximum: .milliseconds(600), jitter: 0))
        let publisher = makeClient(first.url)
        let acked = Acked()
        var second: TestBroker?
        do {
            #expect(try await subscriber.connect().epoch == epoch)
            try await publisher.connect()

            // Retained before the subscription: `history: 1` replays the newest of each topic only
            // (so a resume that fell back to `history` instead of `since` would lose messages).
            var superseded: Set<String> = []
            for n in 1...3 {
                for topic in ["r/a", "r/b"] {
                    let offset = try #require(try await publisher.publish(topic, rawJSON: "\(n)", retain: true).offset)
                    if n < 3 { superseded.insert("\(topic)@\(offset)") } else { acked.add(topic, offset) }
                }
            }
            let subscription = try await subscriber.subscribe("r/#", history: 1)
            let received = Received.collect(subscription)
            try await received.wait(for: 2)
            #expect(received.messages.allSatisfy { $0.replay && $0.json == "3" })
            for n in 4...5 {
                for topic in ["r/a", "r/b"] { acked.add(topic, try await publisher.publish(topic, rawJSON: "\(n)", retain: true).offset) }
            }
            acked.add("r/c", try await publisher.publish("r/c", bytes: [1, 2, 3], retain: true).offset)
            #expect(acked.count == 7)
            try await received.wait(for: 7)

            // Outage: the broker goes away with its journal; both clients notice and reconnect.
            await first.stop()
            await journal.close()
            try await eventually("both clients to see the connection drop") { !subscriber.isConnected && !publisher.isConnected }

            // Published during the outage: these wait for the publisher's reconnect.
            let during = Task {
                for n in 6...8 {
                    for topic in ["r/a", "r/c"] { acked.add(topic, try await publisher.publish(topic, rawJSON: "\(n)", retain: true).offset) }
                }
            }
            // Likely (not certain) to have the first publish waiting when the broker comes back;
            // everything checked below holds either way.
            try await Task.sleep(for: .milliseconds(100))

            journal = try openJournal(directory)
            #expect(journal.epoch == epoch)
            second = try await TestBroker.start(journal: journal, port: port)
            #expect(second?.port == port)

            // And after it, by a client that was never connected to the first broker.
            let late = makeClient("ws://127.0.0.1:\(port)/ws")
            try await late.connect()
            for n in 9...11 {
                for topic in ["r/b", "r/d"] { acked.add(topic, try await late.publish(topic, rawJSON: "\(n)", retain: true).offset) }
            }
            try await during.value
            #expect(acked.count == 19)

            // Once the subscriber is back, live messages follow the replay.
            try await eventually("the subscriber to reconnect") { events.connectedCount == 2 }
            for topic in ["r/a", "r/d"] { acked.add(topic, try await late.publish(topic, rawJSON: "12", retain: true).offset) }
            // A final marker: once it is in, everything published before it is too (per topic order
            // is checked below; the marker only bounds the wait).
            let marker = try #require(try await late.publish("r/z", rawJSON: #""end""#, retain: true).offset)
            acked.add("r/z", marker)
            try await received.wait(for: "the marker") { $0.offset == marker }
            try await received.wait(for: 22)
            #expect(received.error == nil && !received.finished, "the restart ended the subscription")
            // Anything doubled has come in by now: the broker answers the ping behind everything
            // it owed this connection (a replay included), and unsubscribing finishes the
            // subscription behind every message the client gave it.
            try await subscriber.ping()
            try await subscription.unsubscribe()
            try await eventually("the subscription to finish") { received.finished }
            await late.close()

            let messages = received.messages
            let seen = messages.map { "\($0.topic)@\($0.offset ?? 0)" }
            #expect(messages.count == 22, "received \(messages.map(\.summary))")
            #expect(Set(seen).isDisjoint(with: superseded))
            #expect(Set(seen).count == seen.count, "a message was delivered twice: \(seen)")
            #expect(Set(seen) == acked.all, "missing: \(acked.all.subtracting(seen)), extra: \(Set(seen).subtracting(acked.all))")
            for (topic, offsets) in Dictionary(grouping: messages, by: \.topic).mapValues({ $0.compactMap(\.offset) }) {
                #expect(offsets == offsets.sorted() && Set(offsets).count == offsets.count, "\(topic) out of order: \(offsets)")
            }
            // Payloads match what was acknowledged for that offset (spot check: r/c's bytes).
            #expect(messages.first { $0.topic == "r/c" }?.bytes == [1, 2, 3])
            #expect(events.gaps.isEmpty, "unexpected gap: \(events.gaps)")
            #expect(subscription.gapCount == 0)
            #expect(subscription.droppedCount == 0)
            #expect(events.connectedCount == 2)
            #expect(events.disconnectedCount == 1)
            #expect(events.welcomes.map { $0.epoch } == [epoch, epoch])
            #expect(received.error == nil)
        } catch {
            await subscriber.close()
            await publisher.close()
            await second?.stop()
            await journal.close()
            throw error
        }
        await subscriber.close()
        await publisher.close()
        await second?.stop()
        await journal.close()
    }

    @Test func aNewJournalEpochIsReportedAsAGap() async throws {
        let directory = temporaryDirectory()
        let fresh = temporaryDirectory()
        defer {
            removeDirectory(directory)
            removeDirectory(fresh)
        }
        var journal = try openJournal(directory)
        let oldEpoch = journal.epoch
        let first = try await TestBroker.start(journal: journal)
        let port = first.port
        let events = EventLog()
        let subscriber = makeClient(first.url, events: events)
        var second: TestBroker?
        do {
            try await subscriber.connect()
            let subscription = try await subscriber.subscribe("e/#", history: 5)
            let received = Received.collect(subscription)
            let publisher = makeClient(first.url)
            try await publisher.connect()
            var oldOffsets: [UInt64] = []
            for n in 1...3 { oldOffsets.append(try #require(try await publisher.publish("e/a", rawJSON: "\(n)", retain: true).offset)) }
            try await received.wait(for: 3)
            await publisher.close()

            // The broker comes back on the same port with a journal created anew.
            await first.stop()
            await journal.close()
            try await eventually("the subscriber to see the connection drop") { !subscriber.isConnected }
            journal = try openJournal(fresh)
            #expect(journal.epoch != oldEpoch)
            second = try await TestBroker.start(journal: journal, port: port)
            let newPublisher = makeClient("ws://127.0.0.1:\(port)/ws")
            try await newPublisher.connect()
            // Offsets start over: 1 on e/a again, below the 3 the subscriber already saw there.
            let newOffset = try #require(try await newPublisher.publish("e/a", rawJSON: #""new""#, retain: true).offset)
            #expect(newOffset <= oldOffsets.last!)

            try await eventually("the gap event") { !events.gaps.isEmpty }
            let message = try await received.wait(for: "the new epoch's message") { $0.json == #""new""# }
            #expect(message.offset == newOffset)
            #expect(events.gaps.count == 1)
            #expect(events.gaps.first?.filter == "e/#")
            #expect(events.gaps.first?.since == oldOffsets.last)
            #expect(subscription.gapCount == 1)
            #expect(events.welcomes.map { $0.epoch } == [oldEpoch, journal.epoch])

            // Live messages of the new epoch keep flowing, exactly once.
            let next = try #require(try await newPublisher.publish("e/a", rawJSON: #""next""#, retain: true).offset)
            try await received.wait(for: "the next message") { $0.offset == next && $0.json == #""next""# }
            // A barrier, not a pause: the broker answers the ping behind everything it owed this
            // connection, and unsubscribing finishes the subscription behind what the client gave it.
            try await subscriber.ping()
            try await subscription.unsubscribe()
            try await eventually("the subscription to finish") { received.finished }
            #expect(received.messages.map(\.json) == ["1", "2", "3", #""new""#, #""next""#], "\(received.messages.map(\.summary))")
            #expect(subscription.gapCount == 1)
            await newPublisher.close()
        } catch {
            await subscriber.close()
            await second?.stop()
            await journal.close()
            throw error
        }
        await subscriber.close()
        await second?.stop()
        await journal.close()
    }

    @Test func liveOnlySubscriptionIsRestoredAfterARestart() async throws {
        let first = try await TestBroker.start()
        let port = first.port
        let events = EventLog()
        let subscriber = makeClient(first.url, events: events)
        var second: TestBroker?
        do {
            try await subscriber.connect()
            let subscription = try await subscriber.subscribe("live/#", history: 0)
            let received = Received.collect(subscription)
            await first.stop()
            try await eventually("the subscriber to see the connection drop") { !subscriber.isConnected }
            second = try await TestBroker.start(port: port)
            try await eventually("the subscriber to reconnect") { events.connectedCount == 2 }
            // The resubscribe goes out before any request on the new connection; a ping behind it
            // means it has been handled.
            try await subscriber.ping()
            let publisher = makeClient("ws://127.0.0.1:\(port)/ws")
            try await publisher.connect()
            _ = try await publisher.publish("live/x", rawJSON: "1")
            try await received.wait(for: 1)
            #expect(received.messages.map(\.topic) == ["live/x"])
            #expect(events.gaps.isEmpty && subscription.gapCount == 0)
            await publisher.close()
        } catch {
            await subscriber.close()
            await second?.stop()
            throw error
        }
        await subscriber.close()
        await second?.stop()
    }
}
