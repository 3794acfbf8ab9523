import BrokerJournal
import Foundation
import Testing

/// `retainedTopics`: the page of topics `GET /api/topics` lists, the same from SQLite and memory.
@Suite struct RetainedTopicsTests {
    static func journals() throws -> [(name: String, journal: any Journal)] {
        [
            ("sqlite", try SQLiteJournal.open(directory: makeTemporaryDirectory(), logger: quietLogger)),
            ("memory", MemoryJournal()),
        ]
    }

    @Test func listsTopicsWithTheirCountsAndLastOffsetsInByteOrder() async throws {
        for (name, journal) in try Self.journals() {
            _ = try await journal.append("dash/cpu", "1")
            _ = try await journal.append("dash/mem", "2")
            _ = try await journal.append("dash/cpu", "3")
            _ = try await journal.append("other", "4")
            _ = try await journal.append("Dash", "5")  // 'D' sorts before 'd' byte-wise
            let page = try await journal.retainedTopics(RetainedTopicsQuery(limit: 10), on: loop).get()
            #expect(page.isLast, "\(name)")
            #expect(page.topics == [
                RetainedTopic(topic: "Dash", messages: 1, lastOffset: 5),
                RetainedTopic(topic: "dash/cpu", messages: 2, lastOffset: 3),
                RetainedTopic(topic: "dash/mem", messages: 1, lastOffset: 2),
                RetainedTopic(topic: "other", messages: 1, lastOffset: 4),
            ], "\(name)")
            await journal.close()
        }
    }

    @Test func pagesByPrefixAndCursor() async throws {
        for (name, journal) in try Self.journals() {
            for topic in ["a/1", "a/2", "a/3", "ab", "b/1"] { _ = try await journal.append(topic, "0") }
            let first = try await journal.retainedTopics(RetainedTopicsQuery(prefix: "a/", limit: 2), on: loop).get()
            #expect(first.topics.map(\.topic) == ["a/1", "a/2"] && !first.isLast, "\(name)")
            let second = try await journal.retainedTopics(RetainedTopicsQuery(prefix: "a/", after: "a/2", limit: 2), on: loop).get()
            #expect(second.topics.map(\.topic) == ["a/3"] && second.isLast, "\(name)")
            let exact = try await journal.retainedTopics(RetainedTopicsQuery(prefix: "a/", limit: 3), on: loop).get()
            #expect(exact.topics.count == 3 && exact.isLast, "\(name)")
            await journal.close()
        }
    }

    @Test func clearedTopicsAreNotListed() async throws {
        for (name, journal) in try Self.journals() {
            _ = try await journal.append("gone/1", "0")
            _ = try await journal.append("kept/1", "0")
            _ = try await journal.clear(filter: "gone/#", on: loop).get()
            let page = try await journal.retainedTopics(RetainedTopicsQuery(limit: 10), on: loop).get()
            #expect(page.topics.map(\.topic) == ["kept/1"], "\(name)")
            await journal.close()
        }
    }
}
