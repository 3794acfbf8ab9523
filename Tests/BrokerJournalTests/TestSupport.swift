import BrokerJournal
import Dispatch
import Foundation
import Logging
import NIOCore
import Testing

/// A minimal event loop on a serial dispatch queue, enough to complete the journal's futures.
final class TestEventLoop: EventLoop, @unchecked Sendable {
    private let queue = DispatchQueue(label: "test-event-loop")
    private let key = DispatchSpecificKey<Bool>()

    init() { queue.setSpecific(key: key, value: true) }

    var inEventLoop: Bool { DispatchQueue.getSpecific(key: key) == true }

    func execute(_ task: @escaping @Sendable () -> Void) { queue.async(execute: task) }

    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        scheduleTask(in: deadline - .now(), task)
    }

    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise = makePromise(of: T.self)
        let cancelled = Recorder<Bool>()
        queue.asyncAfter(deadline: .now() + .nanoseconds(Int(max(0, delay.nanoseconds)))) {
            guard cancelled.all.isEmpty else { return }
            promise.assumeIsolatedUnsafeUnchecked().completeWith(Result { try task() })
        }
        return Scheduled(promise: promise) {
            cancelled.add(true)
            promise.fail(EventLoopError.cancelled)
        }
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        queue.async { callback(nil) }
    }
}

let loop = TestEventLoop()

/// A fresh directory under the system's temporary directory.
func makeTemporaryDirectory() -> String {
    let path = FileManager.default.temporaryDirectory
        .appendingPathComponent("journal-tests-\(UUID().uuidString)").path
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

let quietLogger: Logger = {
    var logger = Logger(label: "journal-tests")
    logger.logLevel = .warning
    return logger
}()

/// A settable clock for age retention.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var now: Int64
    init(_ start: Int64) { now = start }
    func read() -> Int64 { lock.withLock { now } }
    func advance(by milliseconds: Int64) { lock.withLock { now += milliseconds } }
}

/// Collects values from concurrent completions.
final class Recorder<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func add(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}

extension Journal {
    func append(_ topic: String, _ text: String, binary: Bool = false) async throws -> UInt64 {
        try await withCheckedThrowingContinuation { done in
            append(JournalEntry(topic: topic, payload: ByteBuffer(string: text), isBinary: binary)) { result in
                done.resume(with: result)
            }
        }
    }

    func snapshot() async -> UInt64 {
        await withCheckedContinuation { done in snapshot { done.resume(returning: $0) } }
    }

    /// Every page of a replay, concatenated, checking `isLast` only on the last page.
    func replayAll(_ filter: String, _ selection: ReplaySelection, upTo: UInt64? = nil, pageSize: Int = 1_000) async throws -> [RetainedRecord] {
        let high: UInt64
        if let upTo { high = upTo } else { high = await snapshot() }
        var records: [RetainedRecord] = []
        var after: UInt64 = 0
        while true {
            let page = try await replayPage(
                ReplayQuery(filter: filter, selection: selection, after: after, upTo: high, limit: pageSize),
                on: loop).get()
            records += page.records
            if page.isLast { return records }
            precondition(page.records.count == pageSize, "a page that is not the last must be full")
            after = page.records.last!.offset
        }
    }

    func stats() async throws -> JournalStats { try await stats(on: loop).get() }
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

extension RetainedRecord {
    var text: String { String(buffer: payload) }
}

/// Per-topic retention with overrides, the same for every journal: with a limit of 5 per topic
/// and an override of 8 for `keep/more`, 20 messages on each of `plain` and `keep/more` leave the
/// newest 5 and 8, and `plain` counts as pruned through offset 29 (it kept 31, 33, …, 39).
func checkPerTopicRetentionWithOverrides(_ journal: any Journal, applyRetention: () async -> Void) async throws {
    for index in 1...20 {
        _ = try await journal.append("plain", "\(index)")
        _ = try await journal.append("keep/more", "\(index)")
    }
    await applyRetention()
    #expect(try await journal.stats().messages == 5 + 8)
    #expect(try await journal.replayAll("plain", .since(0)).map(\.text) == (16...20).map(String.init))
    #expect(try await journal.replayAll("keep/more", .since(0)).map(\.text) == (13...20).map(String.init))
    let stats = try await journal.stats()
    #expect(stats.prunedMessages == 15 + 12)
    #expect(stats.lastOffset == 40)
    #expect(try await journal.prunedAfter(28, filter: "plain", on: loop).get())
    #expect(try await !journal.prunedAfter(29, filter: "plain", on: loop).get())
}
