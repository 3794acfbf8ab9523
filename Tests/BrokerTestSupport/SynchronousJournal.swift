import BrokerJournal
import BrokerProtocol
import NIOCore

/// A journal that does everything at once on the caller's thread, so that a whole exchange runs
/// on one `EmbeddedEventLoop` with no other thread: `MemoryJournal` completes from its own
/// queue, which runs the handler's callbacks on that queue while the test thread drives the
/// EmbeddedChannel (a data race ThreadSanitizer reports). Keeps every record; no retention.
/// (Fuzz/Sources/FuzzHTTP has its own copy: the fuzz package cannot see this target.)
package final class SynchronousJournal: Journal, @unchecked Sendable {
    package let epoch: String
    private var records: [RetainedRecord] = []
    private var completionRunEnded: (@Sendable () -> Void)?

    package init(epoch: String = "sync") { self.epoch = epoch }

    package func append(_ request: any JournalAppendRequest) {
        let record = RetainedRecord(
            offset: UInt64(records.count + 1), topic: request.topic, payload: request.payload,
            isBinary: request.isBinary, timestampMilliseconds: 0)
        records.append(record)
        request.completed(.success(record.offset))
        completionRunEnded?()
    }

    package func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        completion(UInt64(records.count))
        completionRunEnded?()
    }

    package func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        completionRunEnded = handler
    }

    package func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
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

    package func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        eventLoop.makeSucceededFuture(false)
    }

    package func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let before = records.count
        records.removeAll { Topic.matches(filter: filter, name: $0.topic) }
        return eventLoop.makeSucceededFuture(before - records.count)
    }

    package func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        eventLoop.makeSucceededFuture(
            JournalStats(
                messages: records.count, topics: Set(records.map(\.topic)).count,
                bytes: records.reduce(0) { $0 + $1.payload.readableBytes },
                firstOffset: records.first?.offset ?? 0, lastOffset: records.last?.offset ?? 0))
    }

    package func close() async {}
}
