import BrokerJournal
import NIOCore
import Testing

/// Replay semantics, checked against both journals.
@Suite struct ReplayTests {
    /// Offsets: sensors/a/temp 1,2,3,7 · sensors/b/temp 4,5 · sensors 6 · $sys/x 8 · other/x 9.
    private func fill(_ journal: any Journal) async throws {
        for (topic, text) in [
            ("sensors/a/temp", "a1"), ("sensors/a/temp", "a2"), ("sensors/a/temp", "a3"),
            ("sensors/b/temp", "b1"), ("sensors/b/temp", "b2"), ("sensors", "s1"),
            ("sensors/a/temp", "a4"), ("$sys/x", "sys1"), ("other/x", "o1"),
        ] {
            _ = try await journal.append(topic, text)
        }
    }

    private func check(_ journal: any Journal) async throws {
        try await fill(journal)
        func texts(_ filter: String, _ selection: ReplaySelection, upTo: UInt64? = nil, pageSize: Int = 1_000) async throws -> [String] {
            try await journal.replayAll(filter, selection, upTo: upTo, pageSize: pageSize).map(\.text)
        }
        // history: newest N per topic, in offset order; `#` matches the parent level too.
        #expect(try await texts("sensors/#", .history(2)) == ["a3", "b1", "b2", "s1", "a4"])
        #expect(try await texts("sensors/#", .history(1)) == ["b2", "s1", "a4"])
        #expect(try await texts("sensors/+/temp", .history(1)) == ["b2", "a4"])
        #expect(try await texts("sensors/a/temp", .history(2)) == ["a3", "a4"])
        #expect(try await texts("sensors/a/temp", .history(0)) == [])
        #expect(try await texts("nothing/here", .history(5)) == [])
        // history considers only offsets up to the high-water mark.
        #expect(try await texts("sensors/a/temp", .history(2), upTo: 5) == ["a2", "a3"])
        // since: everything after S, offset order.
        #expect(try await texts("+/+/temp", .since(3)) == ["b1", "b2", "a4"])
        #expect(try await texts("sensors/a/temp", .since(2)) == ["a3", "a4"])
        #expect(try await texts("sensors/#", .since(0), upTo: 6) == ["a1", "a2", "a3", "b1", "b2", "s1"])
        // `#` and `+` do not match `$` topics; a filter starting with `$` does.
        #expect(try await texts("#", .since(0)) == ["a1", "a2", "a3", "b1", "b2", "s1", "a4", "o1"])
        #expect(try await texts("+/x", .history(1)) == ["o1"])
        #expect(try await texts("$sys/#", .since(0)) == ["sys1"])
        // Paging returns the same records, each page full but the last.
        for size in [1, 2, 3] {
            #expect(try await texts("#", .since(0), pageSize: size) == ["a1", "a2", "a3", "b1", "b2", "s1", "a4", "o1"])
            #expect(try await texts("sensors/#", .history(2), pageSize: size) == ["a3", "b1", "b2", "s1", "a4"])
            #expect(try await texts("sensors/a/temp", .since(0), pageSize: size) == ["a1", "a2", "a3", "a4"])
        }
        let page = try await journal.replayPage(
            ReplayQuery(filter: "#", selection: .since(0), after: 0, upTo: 9, limit: 8), on: loop).get()
        #expect(page.records.map(\.offset) == [1, 2, 3, 4, 5, 6, 7, 9])
        #expect(page.isLast)
        let record = page.records[0]
        #expect(record.topic == "sensors/a/temp" && record.isBinary == false && record.timestampMilliseconds > 0)
    }

    @Test func sqliteReplay() async throws {
        let journal = try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger)
        try await check(journal)
        await journal.close()
    }

    @Test func memoryReplay() async throws {
        let journal = MemoryJournal()
        try await check(journal)
        await journal.close()
    }

    @Test(postgresAvailable) func postgresReplay() async throws {
        let journal = try await openPostgresJournal()
        try await check(journal)
        await journal.close()
    }

    @Test func binaryPayloadsRoundTrip() async throws {
        let journal = try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger)
        let bytes: [UInt8] = [0, 1, 2, 255, 254]
        let offset = try await withCheckedThrowingContinuation { done in
            journal.append(JournalEntry(topic: "bin", payload: ByteBuffer(bytes: bytes), isBinary: true)) {
                done.resume(with: $0)
            }
        }
        let records = try await journal.replayAll("bin", .history(1))
        #expect(records.map(\.offset) == [offset])
        #expect(records.first?.isBinary == true)
        #expect(records.first.map { Array($0.payload.readableBytesView) } == bytes)
        await journal.close()
    }
}
