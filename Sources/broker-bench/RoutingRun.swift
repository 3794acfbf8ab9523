import Foundation
import NIOCore
import NIOPosix

struct RoutingOptions: Sendable {
    var plan: RoutingPlan
    var url: BenchURL
    var size: Int
    var binary: Bool
    var duration: Double
    /// Messages x fan-out in flight during the measured window.
    var window: Int
    var drain: Double
    var warmupTimeout: Double
    var connectConcurrency: Int
    var timeout: Double
    var pid: Int32?
}

struct RoutingResult: Sendable {
    typealias Memory = (rss: Int, hwm: Int)
    var setupNanos: UInt64 = 0
    var warmupNanos: UInt64 = 0
    var warmed = 0
    var warmupRounds = 0
    var published = 0
    var expected = 0
    var delivered = 0
    /// Messages that reached fewer subscriptions than their topic has.
    var messagesShort = 0
    /// A second delivery of one message to one subscription.
    var duplicates = 0
    /// Deliveries to a connection that has no subscription to their topic, or of a measured
    /// message on another topic than it was published to, or with an unreadable payload.
    var misrouted = 0
    var lostConnections = 0
    var publishRefusals = 0
    /// First measured publish to last delivery (or to the end of publishing).
    var measuredNanos: UInt64 = 1
    var publishNanos: UInt64 = 1
    var p50 = 0.0, p90 = 0.0, p99 = 0.0, p999 = 0.0, max = 0.0
    /// Percent of one core over the publishing window.
    var brokerCPU: Double?
    var benchCPU = 0.0
    var rssBefore: Memory?
    var rssSubscribed: Memory?
    var rssEnd: Memory?
}

/// A `routing` run: connect the subscriber connections and set up every subscription, connect
/// the publishers, warm up, then a closed-loop measured window and a drain. Everything happens on
/// one event loop; confined to it (closures that capture it run there).
final class RoutingRun: @unchecked Sendable {
    enum Phase { case subscribing, connectingPublishers, warming, measuring, draining, done }

    let options: RoutingOptions
    let plan: RoutingPlan
    let loop: any EventLoop
    let done: EventLoopPromise<RoutingResult>
    private(set) var phase = Phase.subscribing
    private var result = RoutingResult()
    private var histogram = Histogram()
    private var subscribers: [RoutingSubscriber] = []
    private var publishers: [RoutingPublisher] = []
    private var timeoutTask: Scheduled<Void>?
    private var progressTask: RepeatedTask?

    // Setup.
    private var nextToConnect = 0
    private var subscribedConnections = 0
    private var setupStarted: UInt64 = 0

    // Warm-up: a message on every topic that has a subscription not yet reached, round after round.
    private var warm: [Bool]
    private var warmPerTopic: [Int32]
    private var warmCursor = 0
    private var warmSent = 0
    private var warmReceived = 0
    private var warmReceivedAtLastTick = 0
    private var warmStalledSince: UInt64 = 0
    private var warmStarted: UInt64 = 0
    private let warmLimit: Int

    // Measured window: each message's deliveries, one bit per replica of its topic.
    private var deliveredTo: [UInt64] = []
    private var topicOf: [Int32] = []
    private let limit: Int
    private var nextPublisher = 0
    private var waiting = false
    private var pumpScheduled = false
    private var startedAt: UInt64 = 0
    private var lastDelivery: UInt64 = 0
    private var cpuAtStart: (broker: Double?, bench: Double) = (nil, 0)
    private var misroutedShown = 0

    init(options: RoutingOptions, loop: any EventLoop) {
        self.options = options
        plan = options.plan
        self.loop = loop
        done = loop.makePromise()
        warm = [Bool](repeating: false, count: plan.subscriptions)
        warmPerTopic = [Int32](repeating: 0, count: plan.topics)
        limit = options.window * plan.perTopic
        warmLimit = max(limit, 32_768)
    }

    func start() -> EventLoopFuture<RoutingResult> {
        result.rssBefore = options.pid.flatMap(Report.memory)
        timeoutTask = loop.scheduleTask(in: .milliseconds(Int64(options.timeout * 1000))) { [self] in
            fail(BenchError("timed out after \(options.timeout) s: \(progress())"))
        }
        progressTask = loop.scheduleRepeatedTask(initialDelay: .seconds(10), delay: .seconds(10)) { [self] _ in
            if phase == .subscribing || phase == .warming {
                print("  ... \(progress())")
                fflush(nil)  // shows up now even when stdout is a file
            }
        }
        setupStarted = nowNanos()
        for _ in 0..<min(options.connectConcurrency, plan.connections) { connectNext() }
        return done.futureResult
    }

    private func progress() -> String {
        switch phase {
        case .subscribing, .connectingPublishers:
            return "phase \(phase), \(subscribedConnections) of \(plan.connections) connections subscribed"
        case .warming:
            return "phase warming (round \(result.warmupRounds)), \(result.warmed) of \(plan.subscriptions) subscriptions reached"
        default:
            return "phase \(phase), \(result.delivered) of \(result.expected) deliveries"
        }
    }

    // MARK: Setup

    private func connectNext() {
        guard nextToConnect < plan.connections, phase == .subscribing else { return }
        let index = nextToConnect
        nextToConnect += 1
        let subscriber = RoutingSubscriber(run: self, index: index)
        let (client, future) = WSClient.connect(
            url: options.url, on: loop, delegate: subscriber, expectsWelcome: plan.target == .ours)
        subscriber.client = client
        subscribers.append(subscriber)
        future.whenFailure { [self] error in fail(BenchError("subscriber connection \(index) could not connect: \(error)")) }
    }

    /// Every subscription of connection `c` is confirmed.
    func connectionSubscribed(_ c: Int) {
        guard phase == .subscribing else { return }
        subscribedConnections += 1
        connectNext()
        guard subscribedConnections == plan.connections else { return }
        result.setupNanos = nowNanos() - setupStarted
        result.rssSubscribed = options.pid.flatMap(Report.memory)
        phase = .connectingPublishers
        var ready: [EventLoopFuture<Void>] = []
        for p in 0..<plan.publishers {
            let publisher = RoutingPublisher(run: self, index: p)
            let (client, future) = WSClient.connect(
                url: options.url, on: loop, delegate: publisher, expectsWelcome: plan.target == .ours)
            publisher.client = client
            publishers.append(publisher)
            let promise = publisher.readyPromise
            future.whenFailure { error in promise.fail(error) }
            ready.append(publisher.readyPromise.futureResult)
        }
        EventLoopFuture.andAllSucceed(ready, on: loop).whenComplete { [self] outcome in
            switch outcome {
            case .failure(let error): fail(BenchError("publishers could not connect: \(error)"))
            case .success: warmUp()
            }
        }
    }

    // MARK: Warm-up

    private func warmUp() {
        guard phase == .connectingPublishers else { return }
        phase = .warming
        warmStarted = nowNanos()
        warmStalledSince = warmStarted
        result.warmupRounds = 1
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { [self] task in
            guard phase == .warming else { return task.cancel() }
            warmTick()
        }
        schedulePump()
    }

    private func warmPump() {
        var budget = 512
        while budget > 0 {
            while warmCursor < plan.topics, warmPerTopic[warmCursor] >= plan.perTopic { warmCursor += 1 }
            guard warmCursor < plan.topics else { break }  // this round is out
            guard warmSent - warmReceived + plan.perTopic <= warmLimit else {
                waiting = true
                break
            }
            publishers[plan.publisher(ofTopic: warmCursor)].publish(topic: warmCursor, stamp: nil)
            warmSent += plan.perTopic
            warmCursor += 1
            budget -= 1
        }
        for publisher in publishers { publisher.client.flush() }
        if budget == 0 { schedulePump() }
    }

    /// Every 100 ms: done, a next round, or (no delivery for a second: something was lost) forget
    /// what is outstanding and go on.
    private func warmTick() {
        let now = nowNanos()
        if result.warmed == plan.subscriptions || Double(now - warmStarted) / 1e9 > options.warmupTimeout {
            if result.warmed < plan.subscriptions {
                print("warm-up: gave up after \(options.warmupTimeout) s with \(result.warmed) of \(plan.subscriptions) subscriptions reached")
            }
            result.warmupNanos = now - warmStarted
            measure()
            return
        }
        if warmReceived != warmReceivedAtLastTick {
            warmReceivedAtLastTick = warmReceived
            warmStalledSince = now
        }
        let stalled = now - warmStalledSince > 1_000_000_000 && warmSent > warmReceived
        if stalled {
            warmSent = warmReceived
            warmStalledSince = now
        }
        if warmCursor == plan.topics, warmSent <= warmReceived {
            warmCursor = 0
            result.warmupRounds += 1
            schedulePump()
        } else if stalled {
            schedulePump()
        }
    }

    // MARK: Measured window

    private func measure() {
        phase = .measuring
        waiting = false
        cpuAtStart = (options.pid.flatMap(Report.cpuSeconds), Report.selfCPUSeconds())
        startedAt = nowNanos()
        loop.scheduleTask(in: .milliseconds(Int64(options.duration * 1000))) { [self] in stopPublishing() }
        schedulePump()
    }

    /// Closed loop: publish while at most `limit` deliveries are outstanding.
    private func measurePump() {
        var budget = 256
        let fanout = plan.perTopic
        while budget > 0 {
            if result.expected - result.delivered + fanout > limit && result.expected > result.delivered {
                waiting = true
                break
            }
            let publisher = publishers[nextPublisher]
            nextPublisher = nextPublisher + 1 == publishers.count ? 0 : nextPublisher + 1
            let topic = publisher.nextTopic()
            publisher.publish(topic: topic, stamp: (nowNanos(), result.published))
            deliveredTo.append(0)
            topicOf.append(Int32(topic))
            result.published += 1
            result.expected += fanout
            budget -= 1
        }
        for publisher in publishers { publisher.client.flush() }
        if budget == 0 { schedulePump() }
    }

    private func schedulePump() {
        guard !pumpScheduled else { return }
        pumpScheduled = true
        loop.execute { [self] in
            pumpScheduled = false
            switch phase {
            case .warming: warmPump()
            case .measuring: measurePump()
            default: break
            }
        }
    }

    /// A delivery to subscription `j` (of `topic`) on the connection that holds it.
    @inline(__always)
    func delivered(subscription j: Int, topic: Int, stamp: RoutingStamp) {
        switch stamp {
        case .warmUp:
            warmReceived += 1
            if !warm[j] {
                warm[j] = true
                warmPerTopic[topic] += 1
                result.warmed += 1
            }
            if waiting, phase == .warming, warmSent - warmReceived + plan.perTopic <= warmLimit {
                waiting = false
                schedulePump()
            }
        case .measured(let sentAt, let sequence):
            guard sequence < topicOf.count, topicOf[sequence] == topic else {
                misrouted(connection: plan.connection(ofSubscription: j), what: "message \(sequence) on topic \(topic)")
                return
            }
            let bit = UInt64(1) << UInt64(j % plan.perTopic)
            if deliveredTo[sequence] & bit != 0 {
                result.duplicates += 1
                return
            }
            deliveredTo[sequence] |= bit
            let now = nowNanos()
            histogram.record(nanos: now &- sentAt)
            result.delivered += 1
            lastDelivery = now
            if waiting, phase == .measuring, result.expected - result.delivered + plan.perTopic <= limit {
                waiting = false
                schedulePump()
            }
        case .unknown:
            misrouted(connection: plan.connection(ofSubscription: j), what: "an unreadable payload on topic \(topic)")
        }
    }

    func misrouted(connection c: Int, what: String) {
        result.misrouted += 1
        if misroutedShown < 3 {
            misroutedShown += 1
            print("misrouted: connection \(c) got \(what.prefix(200))")
        }
    }

    private func stopPublishing() {
        guard phase == .measuring else { return }
        phase = .draining
        let now = nowNanos()
        result.publishNanos = now - startedAt
        let seconds = Double(result.publishNanos) / 1e9
        if let before = cpuAtStart.broker, let after = options.pid.flatMap(Report.cpuSeconds) {
            result.brokerCPU = 100 * (after - before) / seconds
        }
        result.benchCPU = 100 * (Report.selfCPUSeconds() - cpuAtStart.bench) / seconds
        let drainEnd = now + UInt64(options.drain * 1e9)
        loop.scheduleRepeatedTask(initialDelay: .milliseconds(10), delay: .milliseconds(10)) { [self] task in
            guard phase == .draining else { return task.cancel() }
            if result.delivered >= result.expected || nowNanos() >= drainEnd {
                task.cancel()
                finish()
            }
        }
    }

    private func finish() {
        guard phase != .done else { return }
        phase = .done
        timeoutTask?.cancel()
        progressTask?.cancel()
        result.measuredNanos = max(1, (lastDelivery > startedAt ? lastDelivery : startedAt + result.publishNanos) - startedAt)
        result.messagesShort = deliveredTo.reduce(0) { $0 + ($1.nonzeroBitCount < plan.perTopic ? 1 : 0) }
        result.p50 = histogram.quantileMillis(0.5)
        result.p90 = histogram.quantileMillis(0.9)
        result.p99 = histogram.quantileMillis(0.99)
        result.p999 = histogram.quantileMillis(0.999)
        result.max = Double(histogram.maxMicros) / 1_000
        result.rssEnd = options.pid.flatMap(Report.memory)
        closeAll()
        done.succeed(result)
    }

    func fail(_ error: any Error) {
        guard phase != .done else { return }
        phase = .done
        timeoutTask?.cancel()
        progressTask?.cancel()
        closeAll()
        done.fail(error)
    }

    private func closeAll() {
        for subscriber in subscribers { subscriber.client.close() }
        for publisher in publishers { publisher.client.close() }
    }

    func connectionLost(_ c: Int, reason: String) {
        guard phase != .done else { return }
        result.lostConnections += 1
        if result.lostConnections <= 3 { print("subscriber connection \(c) lost: \(reason)") }
        if phase == .subscribing { fail(BenchError("subscriber connection \(c) lost while subscribing: \(reason)")) }
    }

    func publisherLost(_ p: Int, reason: String) {
        guard phase != .done, phase != .draining else { return }
        fail(BenchError("publisher \(p) lost: \(reason)"))
    }

    func publishRefused(_ reply: String) {
        result.publishRefusals += 1
        if result.publishRefusals <= 3 { print("publish refused: \(reply.prefix(200))") }
    }
}
