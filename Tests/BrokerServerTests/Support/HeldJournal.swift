import BrokerJournal
import NIOConcurrencyHelpers
import NIOCore

/// A journal whose writer only moves when the test says so: appends and snapshots queue, in
/// order, until `commit()` hands them to an inline MemoryJournal, which completes them at once on
/// the test's thread (one run of completions per commit, like a group commit). Reads go straight
/// through. For EmbeddedEventLoop tests of what happens while a commit is pending.
final class HeldJournal: Journal, Sendable {
    private enum Request {
        case append(any JournalAppendRequest)
        case snapshot(@Sendable (UInt64) -> Void)
    }

    let inner: MemoryJournal
    private let held = NIOLockedValueBox<[Request]>([])
    private let runEnded = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)

    init(epoch: String = "e1") {
        inner = MemoryJournal(epoch: epoch, execution: .inline)
    }

    var epoch: String { inner.epoch }
    var pendingCount: Int { held.withLockedValue { $0.count } }

    func append(_ request: any JournalAppendRequest) { held.withLockedValue { $0.append(.append(request)) } }
    func snapshot(completion: @escaping @Sendable (UInt64) -> Void) { held.withLockedValue { $0.append(.snapshot(completion)) } }

    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        runEnded.withLockedValue { $0 = handler }
    }

    /// Commits everything held, as one group: every completion, then the end of the run.
    func commit() {
        let requests = held.withLockedValue { held -> [Request] in
            defer { held.removeAll() }
            return held
        }
        for request in requests {
            switch request {
            case .append(let append): inner.append(append)
            case .snapshot(let completion): inner.snapshot(completion: completion)
            }
        }
        runEnded.withLockedValue { $0 }?()
    }

    func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        inner.replayPage(query, on: eventLoop)
    }
    func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        inner.prunedAfter(offset, filter: filter, on: eventLoop)
    }
    func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> { inner.clear(filter: filter, on: eventLoop) }
    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> { inner.stats(on: eventLoop) }
    func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        inner.retainedTopics(query, on: eventLoop)
    }
    func close() async { await inner.close() }
}
