import Benchmark
import BrokerJournal
import Dispatch
import Foundation
import Logging
import NIOCore

// Appends to the SQLite journal (SQLiteJournal, WAL, default durability `.normal`, default
// retention) in a temporary data directory: each iteration submits a batch of 10,000 appends
// of 64-byte payloads over 100 topics, as fast as `append` takes them, and ends when the last
// completion has run (completions run in offset order on the writer thread, so the last one
// means all are committed). Figures are per batch: divide by 10,000 for one append. The malloc
// count is process-wide, so it includes the writer thread's (group commits, completions).

/// One append's request, reused across batches (the journal holds it from `append` until its
/// `completed`).
final class AppendRequest: JournalAppendRequest, @unchecked Sendable {
    let topic: String
    let payload: ByteBuffer
    let isBinary = false
    let batch: Batch

    init(topic: String, payload: ByteBuffer, batch: Batch) {
        self.topic = topic
        self.payload = payload
        self.batch = batch
    }

    func completed(_ result: Result<UInt64, JournalError>) {
        if case .failure(let error) = result { fatalError("append failed: \(error)") }
        batch.completedOne()
    }
}

/// Counts a batch's completions down. `remaining` is set before the batch's appends are
/// submitted (the journal's queue lock orders that before the writer reads any of them) and
/// then touched only by the writer thread, which runs completions serially.
final class Batch: @unchecked Sendable {
    var remaining = 0
    let done = DispatchSemaphore(value: 0)

    func completedOne() {
        remaining -= 1
        if remaining == 0 { done.signal() }
    }
}

/// The journal a benchmark run uses and the directory it lives in.
final class JournalFixture: @unchecked Sendable {
    var journal: SQLiteJournal?
    var directory = ""
}

let benchmarks: @Sendable () -> Void = {
    let batchSize = 10_000
    let payload = ByteBuffer(string: #"{"t":21.5,"unit":"C","sensor":"room12","ts":1732612345678,"v":0}"#)
    precondition(payload.readableBytes == 64)
    let batch = Batch()
    let requests = (0..<batchSize).map { index in
        AppendRequest(topic: "site-\(index % 10)/room-\(index % 100 / 10)/temperature", payload: payload, batch: batch)
    }
    let fixture = JournalFixture()

    Benchmark(
        "SQLiteJournal.append 10k x 64 B, until all completed",
        configuration: .init(
            metrics: [.wallClock, .throughput, .mallocCountTotal, .cpuTotal],
            timeUnits: .milliseconds,
            warmupIterations: 2,
            maxDuration: .seconds(10),
            maxIterations: 50
        )
    ) { benchmark in
        guard let journal = fixture.journal else { fatalError("no journal") }
        batch.remaining = batchSize
        for request in requests { journal.append(request) }
        batch.done.wait()
    } setup: {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("broker-journal-bench-\(ProcessInfo.processInfo.processIdentifier)").path
        try? FileManager.default.removeItem(atPath: directory)
        fixture.directory = directory
        fixture.journal = try SQLiteJournal.open(
            directory: directory, logger: Logger(label: "journal-bench") { _ in SwiftLogNoOpLogHandler() })
    } teardown: {
        await fixture.journal?.close()
        fixture.journal = nil
        try? FileManager.default.removeItem(atPath: fixture.directory)
    }
}
