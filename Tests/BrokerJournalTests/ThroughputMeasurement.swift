import Foundation
import BrokerJournal
import NIOCore
import Testing

/// Prints the acknowledged append rate; a measurement, not a timed test.
@Suite struct ThroughputMeasurement {
    @Test func acknowledgedAppendsPerSecond() async throws {
        let journal = try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger)
        let publishers = 10, perPublisher = 30_000
        let payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64)
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for publisher in 0..<publishers {
                group.addTask {
                    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                        for index in 0..<perPublisher {
                            let entry = JournalEntry(topic: "bench/\(publisher)/\(index % 100)", payload: payload, isBinary: false)
                            // Completions run in offset order: the publisher's last one comes last.
                            journal.append(entry) { _ in
                                if index == perPublisher - 1 { done.resume() }
                            }
                        }
                    }
                }
            }
        }
        let elapsed = ContinuousClock.now - start
        let total = publishers * perPublisher
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        print("journal: \(total) acknowledged 64-byte appends from \(publishers) publishers in \(elapsed): \(Int(Double(total) / seconds)) appends/s")
        let replayStart = ContinuousClock.now
        let records = try await journal.replayAll("bench/#", .since(0))
        print("journal: since 0 replay of \(records.count) records in \(ContinuousClock.now - replayStart)")
        #expect(records.count == total)
        await journal.close()
    }
}

/// Prints what a subscribe's replay costs on a journal of 200,000 messages (issue 14's probe), and
/// the database file against `max-bytes`; a measurement, not a timed test. It takes half a minute
/// of CPU, so it runs only when asked for:
/// `BROKER_MEASURE=1 swift test --skip-build --filter WildcardReplayMeasurement`.
@Suite struct WildcardReplayMeasurement {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["BROKER_MEASURE"] != nil))
    func wildcardSubscribeAt200kMessages() async throws {
        let directory = makeTemporaryDirectory()
        var journal = try SQLiteJournal.open(directory: directory, logger: quietLogger)
        let messages = 200_000
        await WildcardReplayTests.appendMany(journal, count: messages) { "bench/\($0 % 2_000)/value" }
        let upTo = await journal.snapshot()
        for (filter, selection) in [
            ("+/nothing", ReplaySelection.history(1)), ("nothing/#", .history(1)), ("bench/7/+", .history(1)),
            ("#", .since(upTo - 100)),
        ] {
            var records = 0
            let rounds = 20
            let start = ContinuousClock.now
            for _ in 0..<rounds {
                records = try await journal.replayAll(filter, selection, upTo: upTo, pageSize: 512).count
            }
            let each = (ContinuousClock.now - start) / rounds
            print("journal: \(messages) messages, subscribe \(filter) \(selection): \(records) records replayed, \(each) each")
        }
        let payload = try await journal.stats().bytes
        await journal.close()
        let path = directory + "/journal.sqlite"
        let size = { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }
        print("journal: \(messages) messages, \(payload) payload bytes, journal.sqlite \(size()) bytes")

        let budget: Int64 = 4 << 20
        journal = try SQLiteJournal.open(
            directory: directory,
            configuration: JournalConfiguration(retention: RetentionPolicy(maxBytes: budget)), logger: quietLogger)
        await journal.applyRetention()
        let kept = try await journal.stats()
        await journal.close()
        print("journal: max-bytes \(budget): kept \(kept.messages) messages (\(kept.bytes) payload bytes), journal.sqlite \(size()) bytes")
    }
}
