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
