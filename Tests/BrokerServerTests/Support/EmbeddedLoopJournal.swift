import BrokerJournal
import Dispatch
import NIOCore
import NIOEmbedded
import NIOPosix

/// A `MemoryJournal` whose completions arrive as tasks of one `EmbeddedEventLoop`, for handler
/// tests on EmbeddedChannel.
///
/// `MemoryJournal` completes on its own dispatch queue, and an embedded loop must not be touched
/// from another thread. So each call here waits, on the calling thread (the loop's), for the
/// memory journal's answer, then queues the completion on the loop: `loop.run()` delivers it, a
/// task later, as the real journal's completions reach a loop after the call returned. A test then
/// never waits for another thread to get round to something: after `loop.run()` every answer the
/// journal owes has arrived.
final class EmbeddedLoopJournal: Journal, @unchecked Sendable {
    private let memory: MemoryJournal
    private let loop: EmbeddedEventLoop
    private var completionRunEnded: (@Sendable () -> Void)?
    /// While set, snapshots never complete: a writer that does not answer.
    var stuck = false

    init(loop: EmbeddedEventLoop, retention: RetentionPolicy = RetentionPolicy(), epoch: String = "e1") {
        self.loop = loop
        self.memory = MemoryJournal(retention: retention, epoch: epoch)
    }

    var epoch: String { memory.epoch }

    /// Forwards the message and takes the result, on the memory journal's queue.
    private final class Forwarded: JournalAppendRequest, @unchecked Sendable {
        let request: any JournalAppendRequest
        let done = DispatchSemaphore(value: 0)
        var result: Result<UInt64, JournalError>?

        init(_ request: any JournalAppendRequest) { self.request = request }
        var topic: String { request.topic }
        var payload: ByteBuffer { request.payload }
        var isBinary: Bool { request.isBinary }
        func completed(_ result: Result<UInt64, JournalError>) {
            self.result = result
            done.signal()
        }
    }

    func append(_ request: any JournalAppendRequest) {
        let forwarded = Forwarded(request)
        memory.append(forwarded)
        forwarded.done.wait()
        let result = forwarded.result!
        loop.execute { [self] in
            request.completed(result)
            completionRunEnded?()
        }
    }

    func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        guard !stuck else { return }
        final class Taken: @unchecked Sendable { var offset: UInt64 = 0 }
        let done = DispatchSemaphore(value: 0)
        let taken = Taken()
        memory.snapshot {
            taken.offset = $0
            done.signal()
        }
        done.wait()
        let offset = taken.offset
        loop.execute { [self] in
            completion(offset)
            completionRunEnded?()
        }
    }

    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        completionRunEnded = handler
    }

    /// Waits for the memory journal's read, then completes it on `eventLoop` in a later task.
    private func relay<T: Sendable>(
        to eventLoop: any EventLoop, _ read: (any EventLoop) -> EventLoopFuture<T>
    ) -> EventLoopFuture<T> {
        let result = Result { try read(MultiThreadedEventLoopGroup.singleton.any()).wait() }
        let promise = eventLoop.makePromise(of: T.self)
        eventLoop.execute { promise.completeWith(result) }
        return promise.futureResult
    }

    func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        relay(to: eventLoop) { memory.replayPage(query, on: $0) }
    }

    func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        relay(to: eventLoop) { memory.prunedAfter(offset, filter: filter, on: $0) }
    }

    func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        relay(to: eventLoop) { memory.clear(filter: filter, on: $0) }
    }

    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        relay(to: eventLoop) { memory.stats(on: $0) }
    }

    func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        relay(to: eventLoop) { memory.retainedTopics(query, on: $0) }
    }

    func close() async {
        await memory.close()
    }
}
