import BrokerJournal
import BrokerJournalPostgres
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

/// The cluster journal against a real PostgreSQL: what `SQLiteJournal` promises (offsets, epoch,
/// retention, clearing), and what two brokers sharing it see of each other.
@Suite(postgresAvailable) struct PostgresJournalTests {
    @Test func offsetsAndEpochSurviveReopenAndAreShared() async throws {
        let url = try await makePostgresDatabase()
        var journal = try await openPostgresJournal(url)
        let epoch = journal.epoch
        #expect(epoch.count == 16)
        for expected in UInt64(1)...5 {
            #expect(try await journal.append("a/\(expected)", "v\(expected)") == expected)
        }
        await journal.close()

        journal = try await openPostgresJournal(url)
        let other = try await openPostgresJournal(url, node: "node-b")
        #expect(journal.epoch == epoch && other.epoch == epoch)
        #expect(await journal.snapshot() == 5)
        #expect(try await other.replayAll("a/+", .since(0)).map(\.text) == ["v1", "v2", "v3", "v4", "v5"])
        #expect(try await journal.append("a/1", "v6") == 6)
        #expect(try await other.append("a/1", "v7") == 7)
        #expect(await journal.snapshot() == 7)
        await journal.close()
        await other.close()
    }

    /// A read while PostgreSQL is down fails (after a bound) instead of waiting for a connection
    /// that is not coming: the metrics collector waits for `stats`, and SIGTERM waits for it
    /// (a broker took over 30 s to stop at load 15). The journal then closes promptly.
    @Test(.timeLimit(.minutes(patientMinutes(2)))) func readsFailWhilePostgresIsDownAndCloseDoesNotWait() async throws {
        let server = try await PostgresServer.start()
        defer { server.stop() }
        let journal = try await openPostgresJournal(PostgresURL(try await server.makeDatabase()))
        _ = try await journal.append("a", "1")
        try await server.stopServer(mode: "fast")
        await #expect(throws: JournalError.self) { try await journal.stats() }
        await journal.close()
    }

    @Test func offsetsAreNotReusedAfterEverythingWasCleared() async throws {
        let url = try await makePostgresDatabase()
        var journal = try await openPostgresJournal(url)
        for _ in 0..<10 { _ = try await journal.append("t", "x") }
        #expect(try await journal.clear(filter: "#", on: loop).get() == 10)
        #expect(try await journal.stats().messages == 0)
        #expect(try await journal.prunedAfter(9, filter: "t", on: loop).get())
        #expect(try await !journal.prunedAfter(10, filter: "t", on: loop).get())
        await journal.close()
        journal = try await openPostgresJournal(url)
        #expect(try await journal.append("t", "y") == 11)
        await journal.close()
    }

    @Test func clearRemovesOnlyMatchingTopics() async throws {
        let journal = try await openPostgresJournal()
        for topic in ["a/1", "a/2", "b/1", "a"] { _ = try await journal.append(topic, topic) }
        #expect(try await journal.clear(filter: "a/+", on: loop).get() == 2)
        #expect(try await journal.replayAll("#", .since(0)).map(\.text) == ["b/1", "a"])
        let stats = try await journal.stats()
        #expect(stats.messages == 2 && stats.topics == 2 && stats.lastOffset == 4 && stats.firstOffset == 3)
        await journal.close()
    }

    @Test func keepsTheNewestMessagesPerTopicWithOverrides() async throws {
        let journal = try await openPostgresJournal(configuration: JournalConfiguration(retention: RetentionPolicy(
            maxMessagesPerTopic: 5,
            overrides: [.init(filter: "keep/#", maxMessagesPerTopic: 8), .init(filter: "keep/more", maxMessagesPerTopic: 100)])))
        try await checkPerTopicRetentionWithOverrides(journal, applyRetention: journal.applyRetention)
        #expect(try await journal.prunedAfter(28, filter: "#", on: loop).get())
        #expect(try await !journal.prunedAfter(0, filter: "other/#", on: loop).get())
        await journal.close()
    }

    @Test func agesOutOldMessages() async throws {
        let clock = TestClock(1_000_000)
        var configuration = JournalConfiguration(retention: RetentionPolicy(maxAge: .seconds(60)))
        configuration.clock = { clock.read() }
        let journal = try await openPostgresJournal(configuration: configuration)
        for index in 1...3 { _ = try await journal.append("old", "\(index)") }
        clock.advance(by: 61_000)
        _ = try await journal.append("new", "fresh")
        await journal.applyRetention()
        #expect(try await journal.replayAll("#", .since(0)).map(\.text) == ["fresh"])
        #expect(try await journal.prunedAfter(0, filter: "old", on: loop).get())
        await journal.close()
    }

    /// Offsets become visible in commit order: a reader polling the journal while two brokers
    /// append never sees an offset before a lower one (a hole would be a lower offset still
    /// uncommitted, which a client resuming after the higher one would never get).
    @Test func offsetsBecomeVisibleInOrderUnderConcurrentWriters() async throws {
        let url = try await makePostgresDatabase()
        let first = try await openPostgresJournal(url, node: "a")
        let second = try await openPostgresJournal(url, node: "b")
        let reader = try await openPostgresJournal(url, node: "reader")
        let perBroker = 1_500
        let writers = Task {
            await withTaskGroup(of: Void.self) { group in
                for journal in [first, second] {
                    group.addTask {
                        for index in 0..<perBroker {
                            journal.append(JournalEntry(topic: "v/\(index % 3)", payload: ByteBuffer(string: "x"), isBinary: false)) { _ in }
                        }
                        _ = await journal.snapshot()
                    }
                }
            }
        }
        var reads = 0, highest: UInt64 = 0
        while highest < UInt64(2 * perBroker) {
            let page = try await reader.replayPage(
                ReplayQuery(filter: "#", selection: .since(0), after: 0, upTo: UInt64(Int64.max), limit: 10_000), on: loop).get()
            let offsets = page.records.map(\.offset)
            #expect(offsets == (0..<offsets.count).map { UInt64($0 + 1) })
            highest = offsets.last ?? 0
            reads += 1
        }
        await writers.value
        #expect(reads > 1)
        for journal in [first, second, reader] { await journal.close() }
    }

    /// Retention passes and clears running while two brokers append to new and old topics: every
    /// append commits (their locks are taken in one order, so no deadlock aborts a group).
    @Test func retentionAndClearsDoNotFailConcurrentAppends() async throws {
        let url = try await makePostgresDatabase()
        let configuration = JournalConfiguration(retention: RetentionPolicy(maxMessagesPerTopic: 2))
        let first = try await openPostgresJournal(url, node: "a", configuration: configuration)
        let second = try await openPostgresJournal(url, node: "b", configuration: configuration)
        let failures = Recorder<JournalError>()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, journal) in [first, second].enumerated() {
                group.addTask {
                    for round in 0..<300 {
                        do {
                            _ = try await journal.append("t/\(round % 40)/\(round % 7)", "\(index)-\(round)")
                        } catch let error as JournalError {
                            failures.add(error)
                        }
                    }
                }
                group.addTask {
                    for round in 0..<15 {
                        await journal.applyRetention()
                        _ = try await journal.clear(filter: "t/\(round)/#", on: loop).get()
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(failures.all.isEmpty)
        #expect(await first.snapshot() == 600)
        await first.close()
        await second.close()
    }

    /// The brokers' LISTEN connections are cut while both append: each reconnects, catches up
    /// from the journal, and still sees every offset exactly once, in order (its own appends
    /// completed, the other's delivered).
    @Test func aFeedThatLosesItsConnectionCatchesUpFromTheJournal() async throws {
        let server = try await PostgresServer.shared()
        let urlText = try await server.makeDatabase()
        let database = String(urlText.split(separator: "/").last!)
        let url = try PostgresURL(urlText)
        let first = try await openPostgresJournal(url, node: "a")
        let second = try await openPostgresJournal(url, node: "b")
        let seenByFirst = Recorder<UInt64>(), seenBySecond = Recorder<UInt64>()
        first.onRemotePublication { if let offset = $0.offset { seenByFirst.add(offset) } }
        second.onRemotePublication { if let offset = $0.offset { seenBySecond.add(offset) } }
        try await server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND datname = current_database()", database: database)
        let perBroker = 300
        await withTaskGroup(of: Void.self) { group in
            for (journal, seen) in [(first, seenByFirst), (second, seenBySecond)] {
                group.addTask {
                    for index in 0..<perBroker {
                        journal.append(JournalEntry(topic: "c/\(index % 5)", payload: ByteBuffer(string: "\(index)"), isBinary: false)) {
                            seen.add(try! $0.get())
                        }
                    }
                }
            }
        }
        try await BrokerTestSupport.eventually("both brokers saw every offset", timeout: .seconds(60)) {
            seenByFirst.all.count == 2 * perBroker && seenBySecond.all.count == 2 * perBroker
        }
        #expect(seenByFirst.all == Array(1...UInt64(2 * perBroker)))
        #expect(seenBySecond.all == Array(1...UInt64(2 * perBroker)))
        #expect(first.feedCatchUps >= 1 && second.feedCatchUps >= 1)
        await first.close()
        await second.close()
    }

    /// A broker whose feed falls behind (here: at most one notification may wait, and processing
    /// is held while the publisher commits) drops its connection and catches up from the journal
    /// instead of holding the backlog in memory: it still delivers every offset once, in order.
    @Test func aFeedThatFallsBehindCatchesUpFromTheJournal() async throws {
        let url = try await makePostgresDatabase()
        let publisher = try await openPostgresJournal(url, node: "a")
        let follower = try await PostgresJournal.open(
            url: url, nodeName: "b", configuration: JournalConfiguration(), feedBufferLimit: 1,
            openTimeout: patience(.seconds(15)), logger: quietLogger)
        let seen = Recorder<UInt64>()
        follower.onRemotePublication { seen.add($0.offset ?? 0) }
        follower.holdFeed()
        let count = 200
        for index in 0..<count { _ = try await publisher.append("f/\(index % 3)", "\(index)") }
        // Three notifications overflow a limit of one while processing is held; 200 were sent.
        try await BrokerTestSupport.eventually("the follower's feed overflowed", timeout: .seconds(60)) { follower.feedOverflows >= 1 }
        #expect(seen.all.isEmpty)
        follower.releaseFeed()
        try await BrokerTestSupport.eventually("the follower delivered every offset", timeout: .seconds(60)) { seen.all.count >= count }
        #expect(seen.all == Array(1...UInt64(count)))
        #expect(follower.feedCatchUps >= 1)
        await publisher.close()
        await follower.close()
    }

    /// Two brokers appending at once: each sees every offset exactly once, in offset order: its own
    /// as completions, the other's as remote publications. Large payloads go by reference, large
    /// live messages in chunks.
    @Test func twoBrokersSeeEveryOffsetOnceInOrder() async throws {
        let url = try await makePostgresDatabase()
        let first = try await openPostgresJournal(url, node: "a")
        let second = try await openPostgresJournal(url, node: "b")
        enum Seen: Sendable, Equatable { case own(UInt64), remote(UInt64, String), live(String) }
        let seenByFirst = Recorder<Seen>(), seenBySecond = Recorder<Seen>()
        for (journal, seen) in [(first, seenByFirst), (second, seenBySecond)] {
            journal.onRemotePublication { publication in
                let text = String(buffer: publication.payload)
                seen.add(publication.offset.map { .remote($0, text) } ?? .live(text))
            }
        }
        let perBroker = 400
        let large = String(repeating: "L", count: 5_000)
        await withTaskGroup(of: Void.self) { group in
            for (journal, seen, name) in [(first, seenByFirst, "a"), (second, seenBySecond, "b")] {
                group.addTask {
                    for index in 0..<perBroker {
                        let text = index % 50 == 0 ? large : "\(name)\(index)"
                        journal.append(JournalEntry(topic: "t/\(index % 7)", payload: ByteBuffer(string: text), isBinary: false)) {
                            seen.add(.own(try! $0.get()))
                        }
                    }
                    journal.broadcast(JournalEntry(topic: "live", payload: ByteBuffer(string: name + large + large), isBinary: false))
                }
            }
        }
        let total = UInt64(2 * perBroker)
        try await BrokerTestSupport.eventually("both brokers saw every offset", timeout: .seconds(60)) {
            seenByFirst.all.count == 2 * perBroker + 1 && seenBySecond.all.count == 2 * perBroker + 1
        }
        for (seen, other) in [(seenByFirst.all, "b"), (seenBySecond.all, "a")] {
            let offsets = seen.compactMap { event -> UInt64? in
                switch event {
                case .own(let offset), .remote(let offset, _): return offset
                case .live: return nil
                }
            }
            #expect(offsets == Array(1...total))
            #expect(seen.contains(.live(other + large + large)))
            let remoteTexts = seen.compactMap { event -> String? in
                if case .remote(_, let text) = event { return text }
                return nil
            }
            #expect(remoteTexts.filter { $0 == large }.count == perBroker / 50)
            #expect(remoteTexts.filter { $0 != large }.allSatisfy { $0.hasPrefix(other) })
        }
        await first.close()
        await second.close()
    }
}
