import BrokerJournal
import BrokerTestSupport
import NIOCore
import Testing

/// Offsets and the order of completions, for both journals.
@Suite struct OrderingTests {
    /// SQLite, memory, and the cluster journal when PostgreSQL is installed.
    private static func journals() async throws -> [any Journal] {
        var journals: [any Journal] = [try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger), MemoryJournal()]
        if PostgresServer.isAvailable { journals.append(try await openPostgresJournal()) }
        return journals
    }

    @Test func completionsRunInOffsetOrderAcrossConcurrentPublishers() async throws {
        for journal in try await Self.journals() {
            let completed = Recorder<UInt64>()
            let publishers = 8, perPublisher = 2_000
            await withTaskGroup(of: Void.self) { group in
                for publisher in 0..<publishers {
                    group.addTask {
                        for index in 0..<perPublisher {
                            let entry = JournalEntry(topic: "p/\(publisher)/\(index % 10)", payload: ByteBuffer(string: "x"), isBinary: false)
                            journal.append(entry) { result in completed.add(try! result.get()) }
                        }
                    }
                }
            }
            let last = await journal.snapshot()
            let offsets = completed.all
            #expect(offsets.count == publishers * perPublisher)
            #expect(offsets == Array(1...UInt64(publishers * perPublisher)))
            #expect(last == UInt64(publishers * perPublisher))
            await journal.close()
        }
    }

    @Test func snapshotCompletesAfterTheAppendsBeforeIt() async throws {
        enum Event: Equatable, Sendable { case appended(UInt64), snapshot(UInt64) }
        for journal in try await Self.journals() {
            let events = Recorder<Event>()
            for round in 0..<200 {
                for _ in 0..<(round % 7) {
                    journal.append(JournalEntry(topic: "t", payload: ByteBuffer(string: "x"), isBinary: false)) {
                        events.add(.appended(try! $0.get()))
                    }
                }
                journal.snapshot { events.add(.snapshot($0)) }
            }
            _ = await journal.snapshot()
            var lastAppended: UInt64 = 0
            var snapshots = 0
            for event in events.all {
                switch event {
                case .appended(let offset):
                    #expect(offset == lastAppended + 1)
                    lastAppended = offset
                case .snapshot(let high):
                    #expect(high == lastAppended)
                    snapshots += 1
                }
            }
            #expect(snapshots == 200)
            await journal.close()
        }
    }

    @Test func appendsAfterCloseFail() async throws {
        for journal in try await Self.journals() {
            await journal.close()
            await #expect(throws: JournalError.closed) { try await journal.append("t", "x") }
            await #expect(throws: JournalError.closed) { try await journal.stats() }
        }
    }
}
