import ArgumentParser
import BrokerProtocol
import Foundation
import NIOCore
import NIOPosix

struct Fanout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N subscribers, M publishers: deliveries/s, latency percentiles, loss, broker RSS.",
        discussion: """
            Method (as ../shared/peerbench/wsbench): subscriber i subscribes to topic i mod T \
            (history 0); publisher p owns topics p, p+P, ...; a warm-up message goes to every topic \
            until every subscriber has one; then publishers send for --duration seconds, either at \
            --rate messages/s in total (absolute schedule) or, with --rate 0, as fast as the broker \
            delivers with at most --window messages x fan-out published but not yet received (a \
            closed loop). Every payload carries its send time; latency is publish -> receive on this \
            host's monotonic clock. Loss = deliveries expected - received after a drain of up to \
            --drain seconds.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Subscriber connections.")
    var subscribers = 1_000

    @Option(help: "Publisher connections.")
    var publishers = 1

    @Option(help: "Topics (subscriber i takes topic i mod T).")
    var topics = 1

    @Option(help: "Total publish rate in messages/s; 0 = as fast as the broker delivers (closed loop, see --window).")
    var rate: Double = 0

    @OptionGroup var closedLoop: ClosedLoopOptions

    @Option(help: "Subscriber handshakes in progress at once.")
    var connectConcurrency = 64

    @Option(help: "Publishers' broker, when not --url's: another broker of a cluster (docs/cluster.md), so that every delivery crosses brokers.")
    var publishURL: String?

    @Option(name: .customLong("subscribe-urls"), help: "Subscribers' brokers, comma-separated, instead of --url alone: subscriber i connects to the (i mod n)-th, spreading them over a cluster's brokers (docs/cluster.md).")
    var subscribeURLs: String?

    func validate() throws {
        guard subscribers > 0, publishers > 0, topics > 0, closedLoop.duration > 0 else {
            throw ValidationError("subscribers, publishers, topics and duration must be positive")
        }
        guard common.size >= (common.binary ? 8 : 21) else {
            throw ValidationError("--size must be at least 21 (text: quotes and a 19-digit timestamp) or 8 (binary)")
        }
    }

    func run() async throws {
        let url = try common.parsedURL()
        var publishTo = url
        if let publishURL {
            guard let parsed = BenchURL(publishURL) else { throw ValidationError("--publish-url must look like ws://host:port/path") }
            publishTo = parsed
        }
        var subscribeTo = [url]
        if let subscribeURLs {
            subscribeTo = try subscribeURLs.split(separator: ",").map { text in
                guard let parsed = BenchURL(String(text)) else { throw ValidationError("--subscribe-urls must list ws://host:port/path URLs") }
                return parsed
            }
            guard !subscribeTo.isEmpty else { throw ValidationError("--subscribe-urls lists no URL") }
        }
        let window = closedLoop.window(size: common.size)
        let options = FanoutOptions(
            url: url, publishURL: publishTo, subscribeURLs: subscribeTo, subscribers: subscribers, publishers: publishers, topics: topics, size: common.size,
            rate: rate, duration: closedLoop.duration, window: window, drain: closedLoop.drain, binary: common.binary,
            connectConcurrency: max(1, connectConcurrency), timeout: common.timeout, pid: common.pid)
        Report.header("fanout")
        print("load:    \(subscribers) subscribers, \(publishers) publishers, \(topics) topics, \(common.size) B \(common.binary ? "binary" : "text"), rate \(rate > 0 ? Report.rate(rate) + " msg/s" : "max (window \(window) msgs x fan-out)"), \(closedLoop.duration) s")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let result: FanoutResult
        do {
            result = try await loop.flatSubmit { FanoutRun(options: options, loop: loop).start() }.get()
        } catch {
            try? await group.shutdownGracefully()
            print("FAILED: \(error)")
            throw ExitCode.failure
        }
        try? await group.shutdownGracefully()

        let seconds = Double(result.measuredNanos) / 1e9
        print("publish: \(result.published) messages = \(Report.rate(Double(result.published) / closedLoop.duration)) msg/s" + (result.heldBack > 0 ? " (rate NOT sustained: held back \(result.heldBack) times)" : ""))
        print("deliver: \(result.delivered) deliveries in \(String(format: "%.3f", seconds)) s = \(Report.rate(Double(result.delivered) / seconds)) deliveries/s")
        print("latency ms: p50 \(Report.ms(result.p50)) p90 \(Report.ms(result.p90)) p99 \(Report.ms(result.p99)) p999 \(Report.ms(result.p999)) max \(Report.ms(result.max))")
        let lossPercent = result.expected > 0 ? 100 * Double(result.expected - result.delivered) / Double(result.expected) : 0
        print("loss:    \(result.expected - result.delivered) of \(result.expected) (\(String(format: "%.4f", lossPercent))%), subscribers lost \(result.lostSubscribers)")
        if let before = result.rssBefore, let subscribed = result.rssSubscribed, let end = result.rssEnd {
            let perConnection = Double(subscribed.rss - before.rss) * 1024 / Double(subscribers)
            print("broker:  VmRSS before \(Report.mib(before.rss)), subscribed \(Report.mib(subscribed.rss)) (\(String(format: "%.1f", perConnection / 1024)) KiB per subscriber), end \(Report.mib(end.rss)); VmHWM \(Report.mib(end.hwm))")
        }
    }
}

struct FanoutOptions: Sendable {
    var url: BenchURL
    /// Where the publishers connect (`url` unless `--publish-url`).
    var publishURL: BenchURL
    /// Where the subscribers connect, in turn (`[url]` unless `--subscribe-urls`).
    var subscribeURLs: [BenchURL]
    var subscribers: Int
    var publishers: Int
    var topics: Int
    var size: Int
    var rate: Double
    var duration: Double
    var window: Int
    var drain: Double
    var binary: Bool
    var connectConcurrency: Int
    var timeout: Double
    var pid: Int32?
}

struct FanoutResult: Sendable {
    var published = 0
    var expected = 0
    var delivered = 0
    var measuredNanos: UInt64 = 1
    var heldBack = 0
    var lostSubscribers = 0
    var p50 = 0.0, p90 = 0.0, p99 = 0.0, p999 = 0.0, max = 0.0
    var rssBefore: (rss: Int, hwm: Int)?
    var rssSubscribed: (rss: Int, hwm: Int)?
    var rssEnd: (rss: Int, hwm: Int)?
}

/// Confined to its event loop (closures that capture it run there).
final class FanoutRun: @unchecked Sendable {
    enum Phase { case connecting, warming, measuring, draining, done }

    let options: FanoutOptions
    let loop: any EventLoop
    let tag = runTag()
    let done: EventLoopPromise<FanoutResult>
    var phase = Phase.connecting
    var result = FanoutResult()
    var histogram = Histogram()
    var subscribers: [FanoutSubscriber] = []
    var publishers: [FanoutPublisher] = []
    var subscribersPerTopic: [Int]
    let maxFanout: Int
    let limit: Int
    var nextToConnect = 0
    var subscribed = 0
    var warmed = 0
    var startedAt: UInt64 = 0
    var end: UInt64 = 0
    var lastDelivery: UInt64 = 0
    var waiting = false
    var pumpScheduled = false
    var nextPublisher = 0
    var timeoutTask: Scheduled<Void>?

    init(options: FanoutOptions, loop: any EventLoop) {
        self.options = options
        self.loop = loop
        done = loop.makePromise()
        subscribersPerTopic = (0..<options.topics).map { t in
            options.subscribers / options.topics + (t < options.subscribers % options.topics ? 1 : 0)
        }
        maxFanout = max(1, subscribersPerTopic.max() ?? 1)
        limit = options.window * max(1, options.subscribers / options.topics)
    }

    func topic(_ index: Int) -> String { "f/\(tag)/\(index)" }

    func start() -> EventLoopFuture<FanoutResult> {
        result.rssBefore = options.pid.flatMap(Report.memory)
        timeoutTask = loop.scheduleTask(in: .milliseconds(Int64(options.timeout * 1000))) { [self] in
            fail(BenchError("timed out after \(options.timeout) s in phase \(phase) (subscribed \(subscribed), warmed \(warmed))"))
        }
        for _ in 0..<min(options.connectConcurrency, options.subscribers) { connectNext() }
        return done.futureResult
    }

    func connectNext() {
        guard nextToConnect < options.subscribers, phase == .connecting else { return }
        let index = nextToConnect
        nextToConnect += 1
        let subscriber = FanoutSubscriber(run: self, topic: topic(index % options.topics))
        let url = options.subscribeURLs[index % options.subscribeURLs.count]
        let (client, future) = WSClient.connect(url: url, on: loop, delegate: subscriber)
        subscriber.client = client
        subscribers.append(subscriber)
        future.whenFailure { [self] error in fail(BenchError("subscriber \(index) could not connect: \(error)")) }
    }

    func subscriberConfirmed() {
        subscribed += 1
        connectNext()
        guard subscribed == options.subscribers else { return }
        result.rssSubscribed = options.pid.flatMap(Report.memory)
        var ready: [EventLoopFuture<Void>] = []
        for p in 0..<options.publishers {
            let owned = stride(from: p, to: options.topics, by: options.publishers).map { $0 }
            let publisher = FanoutPublisher(run: self, topics: owned)
            let (client, future) = WSClient.connect(url: options.publishURL, on: loop, delegate: publisher)
            publisher.client = client
            publishers.append(publisher)
            ready.append(future)
        }
        EventLoopFuture.andAllSucceed(ready, on: loop).whenComplete { [self] outcome in
            switch outcome {
            case .failure(let error): fail(BenchError("publishers could not connect: \(error)"))
            case .success: warmUp()
            }
        }
    }

    func warmUp() {
        phase = .warming
        let began = nowNanos()
        loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(250)) { [self] task in
            guard phase == .warming else { return task.cancel() }
            if warmed == subscribers.count || nowNanos() - began > 30_000_000_000 {
                task.cancel()
                loop.scheduleTask(in: .milliseconds(300)) { [self] in measure() }
                return
            }
            for publisher in publishers {
                for t in publisher.topics { publisher.publish(topic: t, stamp: 0) }
                publisher.client.flush()
            }
        }
    }

    func measure() {
        guard phase == .warming else { return }
        phase = .measuring
        startedAt = nowNanos()
        end = startedAt + UInt64(options.duration * 1e9)
        loop.scheduleTask(in: .milliseconds(Int64(options.duration * 1000))) { [self] in stopPublishing() }
        if options.rate > 0 {
            loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { [self] task in
                guard phase == .measuring else { return task.cancel() }
                paced()
            }
        } else {
            pump()
        }
    }

    /// Closed loop: publish while fewer than `limit` deliveries are outstanding.
    func pump() {
        pumpScheduled = false
        guard phase == .measuring, !publishers.isEmpty else { return }
        var budget = 256
        var blocked = 0
        while budget > 0, blocked < publishers.count {
            let publisher = publishers[nextPublisher]
            nextPublisher = (nextPublisher + 1) % publishers.count
            guard let t = publisher.nextTopic() else {
                blocked += 1
                continue
            }
            let fanout = subscribersPerTopic[t]
            if result.expected - result.delivered + fanout > limit && result.expected > result.delivered {
                blocked = publishers.count
                break
            }
            publisher.publishNext(stamp: nowNanos())
            result.published += 1
            result.expected += fanout
            budget -= 1
            blocked = 0
        }
        for publisher in publishers { publisher.client.flush() }
        if budget == 0 {
            schedulePump()
        } else {
            waiting = true
        }
    }

    func schedulePump() {
        guard !pumpScheduled else { return }
        pumpScheduled = true
        loop.execute { [self] in pump() }
    }

    /// Fixed rate: catch up with the absolute schedule every millisecond, unless a whole window behind.
    func paced() {
        let now = nowNanos()
        let due = Int(options.rate * Double(now - startedAt) / 1e9) - result.published
        var sent = 0
        while sent < due {
            let publisher = publishers[nextPublisher]
            nextPublisher = (nextPublisher + 1) % publishers.count
            guard let t = publisher.nextTopic() else { continue }
            if result.expected - result.delivered + subscribersPerTopic[t] > 2 * limit {
                result.heldBack += 1
                break
            }
            publisher.publishNext(stamp: now)
            result.published += 1
            result.expected += subscribersPerTopic[t]
            sent += 1
        }
        for publisher in publishers { publisher.client.flush() }
    }

    @inline(__always)
    func delivered(stamp: UInt64) {
        let now = nowNanos()
        histogram.record(nanos: now &- stamp)
        result.delivered += 1
        lastDelivery = now
        if waiting, result.expected - result.delivered + maxFanout <= limit {
            waiting = false
            schedulePump()
        }
    }

    func stopPublishing() {
        guard phase == .measuring else { return }
        phase = .draining
        let drainEnd = nowNanos() + UInt64(options.drain * 1e9)
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(10), delay: .milliseconds(10)) { [self] task in
            guard phase == .draining else { return task.cancel() }
            if result.delivered >= result.expected || nowNanos() >= drainEnd {
                task.cancel()
                finish()
            }
        }
    }

    func finish() {
        guard phase != .done else { return }
        phase = .done
        timeoutTask?.cancel()
        result.measuredNanos = max(1, (lastDelivery > startedAt ? lastDelivery : end) - startedAt)
        result.p50 = histogram.quantileMillis(0.5)
        result.p90 = histogram.quantileMillis(0.9)
        result.p99 = histogram.quantileMillis(0.99)
        result.p999 = histogram.quantileMillis(0.999)
        result.max = Double(histogram.maxMicros) / 1_000
        result.rssEnd = options.pid.flatMap(Report.memory)
        for subscriber in subscribers { subscriber.client.close() }
        for publisher in publishers { publisher.client.close() }
        done.succeed(result)
    }

    func fail(_ error: any Error) {
        guard phase != .done else { return }
        phase = .done
        timeoutTask?.cancel()
        for subscriber in subscribers { subscriber.client.close() }
        for publisher in publishers { publisher.client.close() }
        done.fail(error)
    }

    func subscriberLost(_ reason: String) {
        result.lostSubscribers += 1
        if result.lostSubscribers <= 3 { print("subscriber lost: \(reason)") }
        if phase == .connecting { fail(BenchError("subscriber lost while connecting: \(reason)")) }
    }
}

final class FanoutSubscriber: WSClientDelegate {
    let run: FanoutRun
    var client: WSClient!
    let topic: String
    var confirmed = false
    var warm = false
    var debugFrames = ProcessInfo.processInfo.environment["BENCH_DEBUG"] != nil ? 5 : 0

    init(run: FanoutRun, topic: String) {
        self.run = run
        self.topic = topic
    }

    func ready(_ client: WSClient) {
        client.sendText { buffer in
            buffer.writeStaticString(#"{"op":"subscribe","id":1,"history":0,"topic":"#)
            buffer.writeJSONString(topic)
            buffer.writeStaticString("}")
        }
        client.flush()
    }

    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {
        if debugFrames > 0 {
            debugFrames -= 1
            print("subscriber frame: \(String(buffer: payload)) stamp \(String(describing: FastParse.messageStamp(payload)))")
        }
        let stamp: UInt64
        if isBinary {
            guard let delivery = try? BinaryCodec.decodeMessage(payload),
                let value = delivery.payload.getInteger(at: delivery.payload.readerIndex, as: UInt64.self)
            else { return }
            stamp = value
        } else if let value = FastParse.messageStamp(payload) {
            stamp = value
        } else {
            if !confirmed, case .subscribed? = try? ServerMessage.parseText(payload) {
                confirmed = true
                run.subscriberConfirmed()
            }
            return
        }
        if stamp == 0 {
            if !warm {
                warm = true
                run.warmed += 1
            }
        } else {
            run.delivered(stamp: stamp)
        }
    }

    func closed(_ client: WSClient, reason: String) {
        if run.phase != .done { run.subscriberLost(reason) }
    }
}

final class FanoutPublisher: WSClientDelegate {
    let run: FanoutRun
    var client: WSClient!
    let topics: [Int]
    let names: [String]
    let padding: [UInt8]
    let binaryPadding: Int
    var next = 0

    init(run: FanoutRun, topics: [Int]) {
        self.run = run
        self.topics = topics
        names = topics.map(run.topic)
        padding = [UInt8](repeating: UInt8(ascii: "x"), count: max(0, run.options.size - 21))
        binaryPadding = max(0, run.options.size - 8)
    }

    func nextTopic() -> Int? { topics.isEmpty ? nil : topics[next] }

    func publishNext(stamp: UInt64) {
        publish(topic: topics[next], stamp: stamp)
        next = (next + 1) % topics.count
    }

    /// A non-retained publish without an id; `stamp` 0 marks a warm-up message.
    func publish(topic: Int, stamp: UInt64) {
        let name = names[topics.firstIndex(of: topic) ?? 0]
        if run.options.binary {
            client.sendBinary { buffer in
                var payload = ByteBuffer()  // binary mode only; small allocation per publish
                payload.writeInteger(stamp)
                payload.writeRepeatingByte(0x78, count: binaryPadding)
                BinaryCodec.encodePublish(topic: name, payload: payload, retain: false, ackID: nil, into: &buffer)
            }
        } else {
            client.sendText { buffer in
                buffer.writeStaticString(#"{"op":"publish","topic":""#)
                buffer.writeString(name)
                buffer.writeStaticString(#"","data":""#)
                if stamp == 0 {
                    buffer.writeStaticString("w")
                    buffer.writeRepeatingByte(0x78, count: 18)
                } else {
                    // 19 digits, zero-padded: the payload size stays fixed.
                    var digits = stamp
                    var divisor: UInt64 = 1_000_000_000_000_000_000
                    for _ in 0..<19 {
                        buffer.writeInteger(UInt8(48 + (digits / divisor) % 10))
                        digits %= divisor
                        divisor /= 10
                    }
                }
                buffer.writeBytes(padding)
                buffer.writeStaticString(#""}"#)
            }
        }
    }

    func ready(_ client: WSClient) {}
    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {}
    func closed(_ client: WSClient, reason: String) {
        if run.phase == .measuring || run.phase == .warming { run.fail(BenchError("publisher lost: \(reason)")) }
    }
}
