import ArgumentParser
import BrokerProtocol
import Foundation
import NIOCore
import NIOPosix

struct Routing: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Many topics, many subscriptions per connection, exact or wildcard filters: deliveries/s, latency, loss, setup time; against this broker or nats-server.",
        discussion: """
            Subscription j (of topics x K) is replica j % K of topic j / K and lives on subscriber \
            connection j % C, so a topic's K subscribers are on K different connections and each \
            connection holds about topics x K / C subscriptions (our broker allows 1,000 per connection \
            by default: choose C accordingly). Subscription j is a wildcard filter when j % 100 < \
            --wildcard-share, single-level and multi-level in turn. Names: ours r/<t>/x, filters \
            r/<t>/x, r/<t>/+, r/<t>/#; NATS r.<t>.x, r.<t>.*, r.<t>.>. Every filter matches exactly its \
            own topic, so deliveries are the same at any share; only the matching work changes. \
            Each connection sends all its subscriptions at once (ours: `subscribe` with history 0, \
            each confirmed by `subscribed`; NATS: SUBs then PING, confirmed by the PONG). Publisher p \
            owns topics p, p+P, ... and publishes them in turn. A warm-up sends a message to every \
            topic (with at most max(window x K, 32768) deliveries outstanding), round after round, \
            until every subscription has one. Then a closed loop (as fanout): at most --window \
            messages x K published but not yet received, for --duration seconds, and a drain. Each \
            message's deliveries are counted per subscription (duplicates, short messages, \
            deliveries to the wrong connection or topic are reported). \
            --size is the payload as the application gets it: the NATS payload, our binary payload, \
            or the characters of our text `data` string (its quotes not counted, unlike fanout, so \
            that both brokers carry the same bytes; as ../shared/peerbench/wsbench). \
            One JSON line with the parameters and the results ends the output (--out appends it to a file).
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Broker under test: ours (--url ws://127.0.0.1:PORT/ws) or nats (nats-server's websocket listener, --url ws://127.0.0.1:PORT/).")
    var target: RoutingPlan.Target = .ours

    @Option(help: "Distinct topics.")
    var topics = 10_000

    @Option(help: "Subscriptions per topic, each on another connection (at most 64).")
    var subscribersPerTopic = 10

    @Option(help: "Subscriber connections.")
    var connections = 1_000

    @Option(help: "Publisher connections.")
    var publishers = 10

    @Option(help: "Percent of the subscriptions that are wildcard filters, 0...100.")
    var wildcardShare = 0

    @OptionGroup var closedLoop: ClosedLoopOptions

    @Option(help: "Give the warm-up at most this many seconds, then measure anyway (and say so).")
    var warmupTimeout: Double = 60

    @Option(help: "Subscriber connections being set up at once.")
    var connectConcurrency = 64

    @Option(help: "Ours: the broker's max-subscriptions (subscriptions one connection may hold); the run is refused when a connection would need more.")
    var maxSubscriptions = 1_000

    @Option(help: "Append the JSON line to this file.")
    var out: String?

    var plan: RoutingPlan {
        RoutingPlan(
            target: target, topics: topics, perTopic: subscribersPerTopic, connections: connections, publishers: publishers,
            wildcardShare: wildcardShare)
    }

    func validate() throws {
        guard topics > 0, subscribersPerTopic > 0, connections > 0, publishers > 0, closedLoop.duration > 0 else {
            throw ValidationError("topics, subscribers-per-topic, connections, publishers and duration must be positive")
        }
        guard (0...100).contains(wildcardShare) else { throw ValidationError("--wildcard-share is a percentage, 0...100") }
        guard subscribersPerTopic <= 64 else {
            throw ValidationError("--subscribers-per-topic at most 64 (a message's deliveries are tracked in a 64-bit mask)")
        }
        guard subscribersPerTopic <= connections else {
            throw ValidationError("--connections must be at least --subscribers-per-topic: a topic's subscribers are on different connections")
        }
        guard connections <= plan.subscriptions else {
            throw ValidationError("--connections at most topics x subscribers-per-topic (\(plan.subscriptions)): every connection holds a subscription")
        }
        guard publishers <= topics else { throw ValidationError("--publishers at most --topics: every publisher owns a topic") }
        guard !common.binary || target == .ours else { throw ValidationError("--binary is for --target ours only") }
        let minimum = common.binary ? RoutingPayload.binaryHeader : RoutingPayload.textHeader
        guard common.size >= minimum else {
            throw ValidationError("--size at least \(minimum) (\(common.binary ? "8-byte send time, 4-byte sequence" : "19 digits of send time, 10 of sequence"))")
        }
        if target == .ours, plan.subscriptionsPerConnection > maxSubscriptions {
            let needed = (plan.subscriptions + maxSubscriptions - 1) / maxSubscriptions
            throw ValidationError(
                "\(topics) topics x \(subscribersPerTopic) = \(plan.subscriptions) subscriptions on \(connections) connections is "
                    + "\(plan.subscriptionsPerConnection) per connection; the broker allows \(maxSubscriptions) (max-subscriptions, "
                    + "default 1,000): use --connections \(needed) or more, or raise max-subscriptions on the broker and pass --max-subscriptions")
        }
    }

    func run() async throws {
        let url = try common.parsedURL()
        let window = closedLoop.window(size: common.size)
        let plan = self.plan
        let options = RoutingOptions(
            plan: plan, url: url, size: common.size, binary: common.binary, duration: closedLoop.duration, window: window, drain: closedLoop.drain,
            warmupTimeout: warmupTimeout, connectConcurrency: max(1, connectConcurrency), timeout: common.timeout, pid: common.pid)
        Report.header("routing")
        let mode = target == .nats ? "NATS" : common.binary ? "binary" : "text"
        print("load:    \(target.rawValue) at \(url), \(plan.topics) topics x \(plan.perTopic) = \(plan.subscriptions) subscriptions (\(plan.wildcardSubscriptions) wildcard, \(wildcardShare)%) on \(plan.connections) connections (up to \(plan.subscriptionsPerConnection) each), \(plan.publishers) publishers, \(common.size) B \(mode), window \(window) msgs x \(plan.perTopic), \(closedLoop.duration) s")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let loop = group.next()
        let outcome: Result<RoutingResult, any Error>
        do {
            outcome = .success(try await loop.flatSubmit { RoutingRun(options: options, loop: loop).start() }.get())
        } catch {
            outcome = .failure(error)
        }
        try? await group.shutdownGracefully()

        switch outcome {
        case .success(let result):
            printReport(result, options: options)
            try emit(json(options: options, result: result, error: nil))
        case .failure(let error):
            print("FAILED: \(error)")
            try emit(json(options: options, result: nil, error: "\(error)"))
            throw ExitCode.failure
        }
    }

    private func printReport(_ result: RoutingResult, options: RoutingOptions) {
        let plan = options.plan
        let setup = Double(result.setupNanos) / 1e9
        print("setup:   \(plan.subscriptions) subscriptions on \(plan.connections) connections in \(String(format: "%.2f", setup)) s (\(Report.rate(Double(plan.subscriptions) / max(setup, 1e-9))) subscriptions/s)")
        print("warm-up: \(result.warmed) of \(plan.subscriptions) subscriptions reached in \(String(format: "%.2f", Double(result.warmupNanos) / 1e9)) s, \(result.warmupRounds) round(s)")
        let publishSeconds = Double(result.publishNanos) / 1e9
        let span = Double(result.measuredNanos) / 1e9
        print("publish: \(result.published) messages in \(String(format: "%.3f", publishSeconds)) s = \(Report.rate(Double(result.published) / publishSeconds)) msg/s" + (result.publishRefusals > 0 ? ", \(result.publishRefusals) refused" : ""))
        print("deliver: \(result.delivered) of \(result.expected) expected (published x \(plan.perTopic)) in \(String(format: "%.3f", span)) s = \(Report.rate(Double(result.delivered) / span)) deliveries/s")
        let loss = result.expected - result.delivered
        let lossPercent = result.expected > 0 ? 100 * Double(loss) / Double(result.expected) : 0
        print("loss:    \(loss) (\(String(format: "%.4f", lossPercent))%); messages short of \(plan.perTopic) deliveries \(result.messagesShort), duplicates \(result.duplicates), misrouted \(result.misrouted), subscriber connections lost \(result.lostConnections)")
        print("latency ms: p50 \(Report.ms(result.p50)) p90 \(Report.ms(result.p90)) p99 \(Report.ms(result.p99)) p999 \(Report.ms(result.p999)) max \(Report.ms(result.max))")
        let brokerCPU = result.brokerCPU.map { String(format: "%.0f%%", $0) } ?? "? (no --pid)"
        print("cpu:     broker \(brokerCPU), broker-bench \(String(format: "%.0f%%", result.benchCPU)) of one core over the publishing window")
        if let before = result.rssBefore, let subscribed = result.rssSubscribed, let end = result.rssEnd {
            let perSubscription = Double(subscribed.rss - before.rss) * 1024 / Double(plan.subscriptions)
            print("broker:  VmRSS before \(Report.mib(before.rss)), subscribed \(Report.mib(subscribed.rss)) (\(String(format: "%.0f", perSubscription)) B per subscription, connections included), end \(Report.mib(end.rss)); VmHWM \(Report.mib(end.hwm))")
        }
    }

    private func json(options: RoutingOptions, result: RoutingResult?, error: String?) -> JSONLine {
        let plan = options.plan
        var line = JSONLine()
        line["bench"] = .string("routing")
        line["target"] = .string(plan.target.rawValue)
        line["mode"] = .string(plan.target == .nats ? "nats" : options.binary ? "binary" : "text")
        line["url"] = .string(options.url.description)
        line["status"] = .string(error == nil ? "ok" : "failed")
        if let error { line["error"] = .string(error) }
        line["topics"] = .int(plan.topics)
        line["subscribers_per_topic"] = .int(plan.perTopic)
        line["connections"] = .int(plan.connections)
        line["publishers"] = .int(plan.publishers)
        line["wildcard_share"] = .int(plan.wildcardShare)
        line["subscriptions"] = .int(plan.subscriptions)
        line["wildcard_subscriptions"] = .int(plan.wildcardSubscriptions)
        line["subscriptions_per_connection"] = .int(plan.subscriptionsPerConnection)
        line["size"] = .int(options.size)
        line["window"] = .int(options.window)
        line["duration_s"] = .double(options.duration)
        if let result {
            let setup = Double(result.setupNanos) / 1e9
            let publishSeconds = Double(result.publishNanos) / 1e9
            let span = Double(result.measuredNanos) / 1e9
            line["setup_s"] = .double(setup)
            line["subscriptions_per_s"] = .double(Double(plan.subscriptions) / max(setup, 1e-9))
            line["warmed"] = .int(result.warmed)
            line["warmup_s"] = .double(Double(result.warmupNanos) / 1e9)
            line["warmup_rounds"] = .int(result.warmupRounds)
            line["published"] = .int(result.published)
            line["publish_rate"] = .double(Double(result.published) / publishSeconds)
            line["publish_refusals"] = .int(result.publishRefusals)
            line["expected"] = .int(result.expected)
            line["received"] = .int(result.delivered)
            line["loss"] = .int(result.expected - result.delivered)
            line["loss_pct"] = .double(result.expected > 0 ? 100 * Double(result.expected - result.delivered) / Double(result.expected) : 0)
            line["messages_short"] = .int(result.messagesShort)
            line["duplicates"] = .int(result.duplicates)
            line["misrouted"] = .int(result.misrouted)
            line["lost_connections"] = .int(result.lostConnections)
            line["deliveries_per_s"] = .double(Double(result.delivered) / span)
            line["delivery_span_s"] = .double(span)
            line["lat_p50_us"] = .double(result.p50 * 1000)
            line["lat_p90_us"] = .double(result.p90 * 1000)
            line["lat_p99_us"] = .double(result.p99 * 1000)
            line["lat_p999_us"] = .double(result.p999 * 1000)
            line["lat_max_us"] = .double(result.max * 1000)
            line["broker_cpu_pct"] = result.brokerCPU.map(JSONLine.Value.double) ?? .null
            line["bench_cpu_pct"] = .double(result.benchCPU)
            line["broker_rss_before_kb"] = result.rssBefore.map { .int($0.rss) } ?? .null
            line["broker_rss_subscribed_kb"] = result.rssSubscribed.map { .int($0.rss) } ?? .null
            line["broker_rss_kb"] = result.rssEnd.map { .int($0.rss) } ?? .null
            line["broker_peak_rss_kb"] = result.rssEnd.map { .int($0.hwm) } ?? .null
        }
        if let pid = options.pid { line["broker_pid"] = .int(Int(pid)) }
        line["cpus"] = .int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        if let load = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8), let first = load.split(separator: " ").first,
            let value = Double(first) {
            line["loadavg_1m"] = .double(value)
        }
        line["date"] = .string(ISO8601DateFormatter().string(from: Date()))
        line["command"] = .string(CommandLine.arguments.map(Report.quote).joined(separator: " "))
        return line
    }

    private func emit(_ line: JSONLine) throws {
        let text = line.encoded()
        print(text)
        guard let out else { return }
        guard let handle = FileHandle(forWritingAtPath: out) ?? {
            _ = FileManager.default.createFile(atPath: out, contents: nil)
            return FileHandle(forWritingAtPath: out)
        }() else { throw BenchError("cannot write \(out)") }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data((text + "\n").utf8))
    }
}

/// One JSON object whose keys keep the order they were set in.
struct JSONLine {
    enum Value {
        case int(Int)
        case double(Double)
        case string(String)
        case null
    }

    private var fields: [(key: String, value: Value)] = []

    subscript(key: String) -> Value? {
        get { fields.first { $0.key == key }?.value }
        set {
            fields.removeAll { $0.key == key }
            if let newValue { fields.append((key, newValue)) }
        }
    }

    func encoded() -> String {
        var buffer = ByteBuffer()
        buffer.writeStaticString("{")
        for (i, field) in fields.enumerated() {
            if i > 0 { buffer.writeStaticString(",") }
            buffer.writeJSONString(field.key)
            buffer.writeStaticString(":")
            switch field.value {
            case .int(let value): buffer.writeString(String(value))
            case .double(let value): buffer.writeString(value.isFinite ? String(value) : "null")
            case .string(let value): buffer.writeJSONString(value)
            case .null: buffer.writeStaticString("null")
            }
        }
        buffer.writeStaticString("}")
        return String(buffer: buffer)
    }
}
