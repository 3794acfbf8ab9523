import BrokerJournal
import BrokerProtocol
import NIOCore

/// A journal that does everything at once on the caller's thread, so that a whole exchange runs
/// on one `EmbeddedEventLoop` with no other thread (a fuzz input must behave the same every
/// time). Keeps every record; no retention.
final class SynchronousJournal: Journal, @unchecked Sendable {
    let epoch = "fuzz"
    private var records: [RetainedRecord] = []
    private var completionRunEnded: (@Sendable () -> Void)?

    func append(_ request: any JournalAppendRequest) {
        let record = RetainedRecord(
            offset: UInt64(records.count + 1), topic: request.topic, payload: request.payload,
            isBinary: request.isBinary, timestampMilliseconds: 0)
        records.append(record)
        request.completed(.success(record.offset))
        completionRunEnded?()
    }

    func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        completion(UInt64(records.count))
        completionRunEnded?()
    }

    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        completionRunEnded = handler
    }

    func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        var matching = records.filter {
            $0.offset > query.after && $0.offset <= query.upTo && Topic.matches(filter: query.filter, name: $0.topic)
        }
        if case .history(let count) = query.selection {
            var kept: [RetainedRecord] = []
            for topic in Set(matching.map(\.topic)) {
                kept += matching.filter { $0.topic == topic }.suffix(max(0, count))
            }
            matching = kept.sorted { $0.offset < $1.offset }
        }
        let page = Array(matching.prefix(max(1, query.limit)))
        return eventLoop.makeSucceededFuture(ReplayPage(records: page, isLast: page.count == matching.count))
    }

    func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        eventLoop.makeSucceededFuture(false)
    }

    func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let before = records.count
        records.removeAll { Topic.matches(filter: filter, name: $0.topic) }
        return eventLoop.makeSucceededFuture(before - records.count)
    }

    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        eventLoop.makeSucceededFuture(
            JournalStats(
                messages: records.count, topics: Set(records.map(\.topic)).count,
                bytes: records.reduce(0) { $0 + $1.payload.readableBytes },
                firstOffset: records.first?.offset ?? 0, lastOffset: records.last?.offset ?? 0))
    }

    func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        var byTopic: [String: RetainedTopic] = [:]
        for record in records where record.topic.utf8.starts(with: query.prefix.utf8) {
            if let after = query.after, !after.utf8.lexicographicallyPrecedes(record.topic.utf8) { continue }
            var topic = byTopic[record.topic] ?? RetainedTopic(topic: record.topic, messages: 0, lastOffset: 0)
            topic.messages += 1
            topic.lastOffset = max(topic.lastOffset, record.offset)
            byTopic[record.topic] = topic
        }
        let sorted = byTopic.values.sorted { $0.topic.utf8.lexicographicallyPrecedes($1.topic.utf8) }
        let limit = max(1, query.limit)
        return eventLoop.makeSucceededFuture(RetainedTopicsPage(topics: Array(sorted.prefix(limit)), isLast: sorted.count <= limit))
    }

    func close() async {}
}
