import BrokerProtocol
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a worker process tells the coordinator: one JSON object per line on its stdout.
struct WorkerReport: Codable, Sendable {
    /// "ready" once every connection of the worker subscribed (or failed); "report" with deliveries.
    var kind: String
    var held = 0
    var failed = 0
    var firstError: String?
    var lost = 0
    /// Connections that received every broadcast message, each exactly once and in order.
    var complete = 0
    /// Per broadcast message (sequence 1...M): deliveries, first and last receive time (CLOCK_MONOTONIC ns).
    var counts: [Int] = []
    var first: [UInt64] = []
    var last: [UInt64] = []
}

/// One worker process of `connections`: opens its share of the subscribers on one event loop,
/// reports "ready", counts the broadcast deliveries and reports them when every connection has
/// every message or when the coordinator writes `report` on its stdin. Exits at EOF on stdin.
enum ConnectionsWorker {
    static func run(options: WorkerOptions) async throws {
        raiseOpenFileLimit()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let run = try await loop.submit { WorkerRun(options: options, loop: loop) }.get()
        loop.execute { run.start() }
        let stdinReader = Thread {
            while let line = readLine() {
                if line == "report" { loop.execute { run.emitReport() } }
            }
            exit(0)
        }
        stdinReader.start()
        while true { try await Task.sleep(for: .seconds(3600)) }
    }

    /// Soft RLIMIT_NOFILE up to the hard limit (each connection is a descriptor).
    @discardableResult
    static func raiseOpenFileLimit() -> (soft: Int, hard: Int) {
        var limit = rlimit()
        #if canImport(Glibc)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        guard getrlimit(resource, &limit) == 0 else { return (-1, -1) }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        return (Int(limit.rlim_cur), Int(limit.rlim_max))
    }
}

struct WorkerOptions: Sendable {
    var url: BenchURL
    var first: Int
    var count: Int
    var topic: String
    var messages: Int
    var sources: [SocketAddress]
    var connectConcurrency: Int
    var timeout: Double
    var browserHandshake = false
}

/// Confined to its event loop.
final class WorkerRun: @unchecked Sendable {
    let options: WorkerOptions
    let loop: any EventLoop
    var subscribers: [WorkerSubscriber] = []
    var nextToConnect = 0
    var confirmed = 0
    var failed = 0
    var firstError: String?
    var lost = 0
    var readySent = false
    var reportSent = false
    var complete = 0
    var counts: [Int]
    var first: [UInt64]
    var last: [UInt64]

    init(options: WorkerOptions, loop: any EventLoop) {
        self.options = options
        self.loop = loop
        counts = Array(repeating: 0, count: options.messages)
        first = Array(repeating: 0, count: options.messages)
        last = Array(repeating: 0, count: options.messages)
    }

    func start() {
        loop.scheduleTask(in: .milliseconds(Int64(options.timeout * 1000))) { [self] in
            guard !readySent else { return }
            // Give up on the stragglers: close them, so that none of them counts later.
            let pending = options.count - confirmed - failed
            for subscriber in subscribers where !subscriber.confirmed && !subscriber.failed {
                subscriber.failed = true
                subscriber.client.close()
            }
            failed += pending
            if firstError == nil { firstError = "\(pending) still connecting after \(options.timeout) s" }
            emitReady()
        }
        for _ in 0..<min(options.connectConcurrency, options.count) { connectNext() }
        if options.count == 0 { emitReady() }
    }

    func connectNext() {
        guard nextToConnect < options.count, !readySent else { return }
        let index = options.first + nextToConnect
        nextToConnect += 1
        let subscriber = WorkerSubscriber(run: self)
        let source = options.sources.isEmpty ? nil : options.sources[index % options.sources.count]
        let (client, future) = WSClient.connect(
            url: options.url, on: loop, delegate: subscriber, source: source, browserHandshake: options.browserHandshake)
        subscriber.client = client
        subscribers.append(subscriber)
        future.whenFailure { [self] error in
            guard !subscriber.confirmed, !subscriber.failed else { return }
            connectionFailed(subscriber, reason: "\(error)")
        }
    }

    func connectionFailed(_ subscriber: WorkerSubscriber, reason: String) {
        subscriber.failed = true
        failed += 1
        if firstError == nil { firstError = reason }
        connectNext()
        checkReady()
    }

    func subscriberConfirmed() {
        confirmed += 1
        connectNext()
        checkReady()
    }

    func checkReady() {
        if confirmed + failed == options.count { emitReady() }
    }

    func emitReady() {
        guard !readySent else { return }
        readySent = true
        emit(WorkerReport(kind: "ready", held: confirmed - lost, failed: failed, firstError: firstError, lost: lost))
    }

    func delivered(sequence: Int, by subscriber: WorkerSubscriber) {
        let now = nowNanos()
        let i = sequence - 1
        guard i >= 0, i < options.messages, subscriber.confirmed, !subscriber.failed else { return }
        if counts[i] == 0 { first[i] = now }
        counts[i] += 1
        last[i] = now
        if sequence == subscriber.received + 1 {
            subscriber.received = sequence
            if sequence == options.messages {
                complete += 1
                if complete == confirmed - lost { emitReport() }
            }
        } else {
            subscriber.received = -1  // a gap, a duplicate or out of order: never complete
        }
    }

    func subscriberLost(_ subscriber: WorkerSubscriber, reason: String) {
        lost += 1
        if firstError == nil { firstError = "lost: \(reason)" }
    }

    func emitReport() {
        guard !reportSent else { return }
        reportSent = true
        emit(WorkerReport(
            kind: "report", held: confirmed - lost, failed: failed, firstError: firstError, lost: lost,
            complete: complete, counts: counts, first: first, last: last))
    }

    func emit(_ report: WorkerReport) {
        guard let data = try? JSONEncoder().encode(report) else { return }
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
}

final class WorkerSubscriber: WSClientDelegate, @unchecked Sendable {
    unowned let run: WorkerRun
    var client: WSClient!
    var confirmed = false
    var failed = false
    /// The last sequence received in order; -1 after a gap or a duplicate.
    var received = 0

    init(run: WorkerRun) { self.run = run }

    func ready(_ client: WSClient) {
        client.sendText { buffer in
            buffer.writeStaticString(#"{"op":"subscribe","id":1,"history":0,"topic":"#)
            buffer.writeJSONString(run.options.topic)
            buffer.writeStaticString("}")
        }
        client.flush()
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        if isBinary {
            guard let delivery = try? BinaryCodec.decodeMessage(payload),
                let sequence = delivery.payload.getInteger(at: delivery.payload.readerIndex, as: UInt64.self)
            else { return }
            run.delivered(sequence: Int(sequence), by: self)
        } else if let sequence = FastParse.messageStamp(payload) {
            run.delivered(sequence: Int(sequence), by: self)
        } else if !confirmed, !failed, case .subscribed? = try? ServerMessage.parseText(payload) {
            confirmed = true
            run.subscriberConfirmed()
        }
    }

    func closed(_ client: WSClient, reason: String) {
        if confirmed {
            run.subscriberLost(self, reason: reason)
        } else if !failed {
            run.connectionFailed(self, reason: reason)
        }
    }
}
