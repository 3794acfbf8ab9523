import ArgumentParser
import BrokerProtocol
import Foundation
import NIOCore
import NIOPosix

struct Retained: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retained publishes with acks (pipelined per publisher), then a since:0 replay of them.",
        discussion: """
            Each publisher sends retained publishes with request ids, keeping at most --window of them \
            unacknowledged, over its own topics (topic t belongs to publisher t mod P). Reports the \
            acknowledged publishes per second and ack latency. Then (unless --no-replay) a new \
            connection subscribes with since: 0 to the run's topics and times the replay up to the \
            last of them. Topic names are b/<run tag>/<t>, so earlier runs in the same journal do not \
            count. Keep --messages / --topics at or below the broker's retained-per-topic limit \
            (default 1,000), or retention prunes part of the run before the replay.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Publisher connections.")
    var publishers = 10

    @Option(help: "Retained publishes in total (split evenly over the publishers).")
    var messages = 100_000

    @Option(help: "Most unacknowledged publishes per publisher.")
    var window = 1_000

    @Option(help: "Topics (default: enough for at most 500 messages per topic, at least one per publisher).")
    var topics: Int?

    @Flag(inversion: .prefixedNo, help: "Replay the run with since: 0 on a new connection afterwards.")
    var replay = true

    @Option(help: "The broker's data directory: report journal bytes per message (journal.sqlite + -wal).")
    var dataDir: String?

    func validate() throws {
        guard publishers > 0, messages >= publishers, window > 0 else {
            throw ValidationError("need publishers > 0, messages >= publishers, window > 0")
        }
        guard common.size >= 2 else { throw ValidationError("--size must be at least 2") }
    }

    func run() async throws {
        let url = try common.parsedURL()
        let topicCount = topics ?? max(publishers, (messages + 499) / 500)
        let options = RetainedOptions(
            url: url, publishers: publishers, messages: messages, size: common.size, window: window,
            topics: topicCount, replay: replay, binary: common.binary, timeout: common.timeout)
        let journalBefore = dataDir.map(journalBytes)
        let memoryBefore = common.pid.flatMap(Report.memory)

        Report.header("retained")
        print("load:    \(publishers) publishers, \(messages) retained publishes, \(common.size) B \(common.binary ? "binary" : "text") payloads, window \(window)/publisher, \(topicCount) topics")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let result: RetainedResult
        do {
            result = try await loop.flatSubmit { RetainedRun(options: options, loop: loop).start() }.get()
        } catch {
            try? await group.shutdownGracefully()
            print("FAILED: \(error)")
            throw ExitCode.failure
        }
        try? await group.shutdownGracefully()

        let seconds = Double(result.publishNanos) / 1e9
        print("acked:   \(result.acked) in \(String(format: "%.3f", seconds)) s = \(Report.rate(Double(result.acked) / seconds)) acknowledged retained publishes/s (errors \(result.errors))")
        print("ack ms:  p50 \(Report.ms(result.p50)) p90 \(Report.ms(result.p90)) p99 \(Report.ms(result.p99)) max \(Report.ms(result.max))")
        if let replayed = result.replayed {
            let s = Double(result.replayNanos) / 1e9
            print("replay:  since:0 -> \(replayed) messages in \(String(format: "%.3f", s)) s = \(Report.rate(Double(replayed) / s)) msg/s (subscribed reply after \(Report.ms(Double(result.subscribedNanos) / 1e6)) ms)")
        }
        if let dataDir, let before = journalBefore {
            let after = journalBytes(dataDir)
            print("journal: \(dataDir)/journal.sqlite + -wal = \(after) bytes = \(String(format: "%.1f", Double(after) / Double(messages))) bytes/message (grew \(after - before) bytes = \(String(format: "%.1f", Double(after - before) / Double(messages))) bytes/message in this run)")
        }
        if let pid = common.pid, let memory = Report.memory(pid: pid) {
            print("broker:  pid \(pid) VmRSS \(Report.mib(memory.rss)) VmHWM \(Report.mib(memory.hwm))" + (memoryBefore.map { " (VmRSS before \(Report.mib($0.rss)))" } ?? ""))
        }
    }

    func journalBytes(_ directory: String) -> Int {
        ["journal.sqlite", "journal.sqlite-wal"].reduce(0) { total, name in
            let size = (try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0
            return total + size
        }
    }
}

struct RetainedOptions: Sendable {
    var url: BenchURL
    var publishers: Int
    var messages: Int
    var size: Int
    var window: Int
    var topics: Int
    var replay: Bool
    var binary: Bool
    var timeout: Double
}

struct RetainedResult: Sendable {
    var acked = 0
    var errors = 0
    var publishNanos: UInt64 = 0
    var p50 = 0.0, p90 = 0.0, p99 = 0.0, max = 0.0
    var replayed: Int?
    var replayNanos: UInt64 = 0
    var subscribedNanos: UInt64 = 0
}

/// One run, confined to one event loop.
/// Confined to its event loop (closures that capture it run there).
final class RetainedRun: @unchecked Sendable {
    let options: RetainedOptions
    let loop: any EventLoop
    let tag = runTag()
    let done: EventLoopPromise<RetainedResult>
    var publishers: [RetainedPublisher] = []
    var histogram = Histogram()
    var result = RetainedResult()
    var finishedPublishers = 0
    var startedAt: UInt64 = 0
    var finished = false
    var replayReader: ReplayReader?

    init(options: RetainedOptions, loop: any EventLoop) {
        self.options = options
        self.loop = loop
        done = loop.makePromise()
    }

    func topic(_ index: Int) -> String { "b/\(tag)/\(index)" }

    func start() -> EventLoopFuture<RetainedResult> {
        let payload = textPayload(size: options.size)
        var binaryPayload = ByteBuffer()
        binaryPayload.writeRepeatingByte(UInt8(ascii: "x"), count: options.size)
        var ready: [EventLoopFuture<Void>] = []
        for p in 0..<options.publishers {
            let count = options.messages / options.publishers + (p < options.messages % options.publishers ? 1 : 0)
            let names = stride(from: p, to: options.topics, by: options.publishers).map(topic)
            let publisher = RetainedPublisher(
                run: self, topics: names.isEmpty ? [topic(p)] : names, total: count, payload: payload, binaryPayload: binaryPayload)
            let (client, future) = WSClient.connect(url: options.url, on: loop, delegate: publisher)
            publisher.client = client
            publishers.append(publisher)
            ready.append(future)
        }
        let timeout = loop.scheduleTask(in: .milliseconds(Int64(options.timeout * 1000))) { [self] in
            fail(BenchError("timed out after \(options.timeout) s (acked \(publishers.reduce(0) { $0 + $1.acked }) of \(options.messages), replayed \(replayReader?.count ?? 0))"))
        }
        EventLoopFuture.andAllSucceed(ready, on: loop).whenComplete { [self] outcome in
            switch outcome {
            case .failure(let error):
                fail(BenchError("connecting publishers: \(error)"))
            case .success:
                startedAt = nowNanos()
                for publisher in publishers { publisher.pump() }
            }
        }
        done.futureResult.whenComplete { _ in timeout.cancel() }
        return done.futureResult
    }

    func publisherFinished() {
        finishedPublishers += 1
        guard finishedPublishers == publishers.count else { return }
        result.publishNanos = nowNanos() - startedAt
        result.acked = publishers.reduce(0) { $0 + $1.acked - $1.errors }
        result.errors = publishers.reduce(0) { $0 + $1.errors }
        result.p50 = histogram.quantileMillis(0.5)
        result.p90 = histogram.quantileMillis(0.9)
        result.p99 = histogram.quantileMillis(0.99)
        result.max = Double(histogram.maxMicros) / 1_000
        for publisher in publishers { publisher.client.close() }
        guard options.replay else { return succeed() }
        let reader = ReplayReader(run: self, filter: "b/\(tag)/#", expected: options.messages)
        replayReader = reader
        let (client, future) = WSClient.connect(url: options.url, on: loop, delegate: reader)
        reader.client = client
        future.whenFailure { [self] error in fail(BenchError("replay connection: \(error)")) }
    }

    func replayFinished(_ reader: ReplayReader) {
        result.replayed = reader.count
        result.replayNanos = reader.last - reader.subscribeSent
        result.subscribedNanos = reader.subscribedAt > 0 ? reader.subscribedAt - reader.subscribeSent : 0
        reader.client.close()
        succeed()
    }

    func succeed() {
        guard !finished else { return }
        finished = true
        done.succeed(result)
    }

    func fail(_ error: any Error) {
        guard !finished else { return }
        finished = true
        for publisher in publishers { publisher.client.close() }
        replayReader?.client.close()
        done.fail(error)
    }
}

final class RetainedPublisher: WSClientDelegate {
    let run: RetainedRun
    var client: WSClient!
    let topics: [String]
    let total: Int
    let window: Int
    let binary: Bool
    let payload: [UInt8]
    let binaryPayload: ByteBuffer
    var sent = 0
    var acked = 0
    var errors = 0
    var sendTimes: [UInt64]

    init(run: RetainedRun, topics: [String], total: Int, payload: [UInt8], binaryPayload: ByteBuffer) {
        self.run = run
        self.topics = topics
        self.total = total
        self.window = run.options.window
        self.binary = run.options.binary
        self.payload = payload
        self.binaryPayload = binaryPayload
        sendTimes = [UInt64](repeating: 0, count: total)
    }

    func ready(_ client: WSClient) {}

    /// Sends up to the window; `flush: false` from `received`, where the client flushes once at
    /// the end of the read burst (a flush per ack cost a write syscall per message).
    func pump(flush: Bool = true) {
        while sent < total, sent - acked < window {
            let seq = sent
            let topic = topics[seq % topics.count]
            if binary {
                client.sendBinary { buffer in
                    BinaryCodec.encodePublish(topic: topic, payload: binaryPayload, retain: true, ackID: UInt32(seq), into: &buffer)
                }
            } else {
                client.sendText { buffer in
                    buffer.writeStaticString(#"{"op":"publish","topic":""#)
                    buffer.writeString(topic)
                    buffer.writeStaticString(#"","retain":true,"id":"#)
                    buffer.writeDecimal(UInt64(seq))
                    buffer.writeStaticString(#","data":"#)
                    buffer.writeBytes(payload)
                    buffer.writeStaticString("}")
                }
            }
            sendTimes[seq] = nowNanos()
            sent += 1
        }
        if flush { client.flush() }
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        guard !isBinary else { return }
        var id = FastParse.ackID(payload)
        if id == nil, case .error(let code, let message, let errorID)? = try? ServerMessage.parseText(payload) {
            errors += 1
            if errors <= 3 { print("broker error: \(code) \(message) (id \(errorID?.json ?? "none"))") }
            id = errorID.flatMap { UInt64($0.json) }
        }
        guard let id, id < UInt64(total) else { return }
        run.histogram.record(nanos: nowNanos() &- sendTimes[Int(id)])
        acked += 1
        if acked == total {
            run.publisherFinished()
        } else if sent < total {
            pump(flush: false)
        }
    }

    func closed(_ client: WSClient, reason: String) {
        if acked < total { run.fail(BenchError("publisher connection lost: \(reason)")) }
    }
}

/// Subscribes with since: 0 and counts replayed messages up to the run's last one.
final class ReplayReader: WSClientDelegate {
    let run: RetainedRun
    var client: WSClient!
    let filter: String
    let expected: Int
    var count = 0
    var subscribeSent: UInt64 = 0
    var subscribedAt: UInt64 = 0
    var last: UInt64 = 0

    init(run: RetainedRun, filter: String, expected: Int) {
        self.run = run
        self.filter = filter
        self.expected = expected
    }

    func ready(_ client: WSClient) {
        client.sendText { buffer in
            buffer.writeStaticString(#"{"op":"subscribe","id":"replay","since":0,"topic":"#)
            buffer.writeJSONString(filter)
            buffer.writeStaticString("}")
        }
        subscribeSent = nowNanos()
        client.flush()
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        if isBinary {
            guard payload.getInteger(at: payload.readerIndex, as: UInt8.self) == BinaryCodec.messageKind else { return }
        } else if !FastParse.hasPrefix(payload, FastParse.messagePrefix) {
            if case .subscribed? = try? ServerMessage.parseText(payload) { subscribedAt = nowNanos() }
            return
        }
        count += 1
        if count == expected {
            last = nowNanos()
            run.replayFinished(self)
        }
    }

    func closed(_ client: WSClient, reason: String) {
        if count < expected { run.fail(BenchError("replay connection lost: \(reason)")) }
    }
}
