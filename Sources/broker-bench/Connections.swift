import ArgumentParser
import BrokerProtocol
import Foundation
import NIOCore
import NIOPosix

struct Connections: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Many idle subscribed connections: broker RSS per connection, then a broadcast to all of them.",
        discussion: """
            The tool connects first (one publisher), reads the broker's VmRSS, then starts --processes \
            worker processes (itself, with hidden --worker-* options) that open the subscribers, \
            each under its own open-file limit: connection i binds its socket to source address \
            i mod --sources, counted from --source-start (127.0.1.1: the whole 127.0.0.0/8 is \
            loopback on Linux), so no single address runs out of ephemeral ports. Every subscriber \
            subscribes to one topic (history 0). When all of them have, it waits --settle seconds, \
            reads VmRSS again and prints (held - before) / connections. Then it publishes --messages \
            messages to that topic, --interval seconds apart, and every worker counts, per message, \
            the connections that got it and when the first and last copy arrived (CLOCK_MONOTONIC, \
            shared by the processes); reported per message: delivered / held and publish -> last \
            delivery. A connection is complete when it got every message once and in order.
            """)

    @OptionGroup var common: CommonOptions

    @Option(help: "Subscriber connections in all.")
    var connections = 10_000

    @Option(help: "Worker processes holding the subscribers (default: one per 5,000 connections).")
    var processes: Int?

    @Option(help: "Broadcast messages to publish to every subscriber (0: memory only).")
    var messages = 3

    @Option(help: "Seconds between broadcast messages.")
    var interval: Double = 1

    @Option(help: "Seconds to wait, once every subscriber is in, before reading the broker's RSS.")
    var settle: Double = 3

    @Option(help: "Seconds to wait for the deliveries after the last publish.")
    var drain: Double = 30

    @Option(help: "Source addresses to spread the connections over (0: let the kernel choose).")
    var sources = 200

    @Option(help: "First source address (IPv4); the next ones count up from it.")
    var sourceStart = "127.0.1.1"

    @Option(help: "Handshakes in progress at once, per worker process.")
    var connectConcurrency = 100

    @Flag(help: "Upgrade with a browser's headers (about 600 bytes) instead of the minimal 150.")
    var browserHandshake = false

    @Option(help: .hidden) var workerFirst: Int?
    @Option(help: .hidden) var workerCount: Int?
    @Option(help: .hidden) var workerTopic: String?

    func validate() throws {
        guard connections > 0, messages >= 0, sources >= 0, connectConcurrency > 0 else {
            throw ValidationError("connections and --connect-concurrency must be positive, messages and sources not negative")
        }
        if let processes, processes < 1 || processes > connections {
            throw ValidationError("--processes must be between 1 and --connections")
        }
        guard common.size >= (common.binary ? 8 : 21) else {
            throw ValidationError("--size must be at least 21 (text: quotes and 19 digits) or 8 (binary)")
        }
        guard sources == 0 || IPv4.parse(sourceStart) != nil else { throw ValidationError("--source-start must be an IPv4 address") }
    }

    func run() async throws {
        let url = try common.parsedURL()
        let sourceAddresses = try (0..<sources).map { k in
            try SocketAddress(ipAddress: IPv4.format(IPv4.parse(sourceStart)! &+ UInt32(k)), port: 0)
        }
        if let workerFirst, let workerCount, let workerTopic {
            try await ConnectionsWorker.run(options: WorkerOptions(
                url: url, first: workerFirst, count: workerCount, topic: workerTopic, messages: messages,
                sources: sourceAddresses, connectConcurrency: connectConcurrency, timeout: common.timeout,
                browserHandshake: browserHandshake))
            return
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        do {
            try await coordinate(url: url, loop: group.next())
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
    }

    func coordinate(url: BenchURL, loop: any EventLoop) async throws {
        let processCount = processes ?? max(1, (connections + 4_999) / 5_000)
        let limits = ConnectionsWorker.raiseOpenFileLimit()
        signal(SIGPIPE, SIG_IGN)  // a worker that died must not take the coordinator with it
        let topic = "c/\(runTag())"
        Report.header("connections")
        print("load:    \(connections) subscribers on one topic in \(processCount) worker processes, \(sources > 0 ? "\(sources) source addresses from \(sourceStart)" : "kernel-chosen source addresses"), then \(messages) broadcast messages of \(common.size) B \(common.binary ? "binary" : "text"), \(interval) s apart")
        print("host:    RLIMIT_NOFILE here \(limits.soft)/\(limits.hard) (per process), ip_local_port_range \(Host.sysctl("net/ipv4/ip_local_port_range")), somaxconn \(Host.sysctl("net/core/somaxconn")), load average \(Host.loadAverage())")
        if let pid = common.pid {
            print("broker:  pid \(pid), Max open files \(Host.openFileLimit(pid: pid)), descriptors open \(Host.descriptors(pid: pid))")
        }

        let (size, binary) = (common.size, common.binary)
        let publisher = try await loop.submit { BroadcastPublisher(url: url, topic: topic, size: size, binary: binary, loop: loop) }.get()
        do {
            try await publisher.connected.get()
        } catch {
            print("FAILED: the publisher could not connect: \(error)")
            throw ExitCode.failure
        }
        try await Task.sleep(for: .milliseconds(500))
        let before = common.pid.flatMap(Report.memory)

        let countersBefore = Host.tcpCounters()
        let slabBefore = Host.meminfo("Slab")
        let workers = try WorkerProcesses(
            count: processCount, connections: connections, arguments: workerArguments(topic: topic))
        defer { workers.stop() }
        let began = nowNanos()
        let ready = await workers.collect(kind: "ready", within: common.timeout + 10)
        let connectSeconds = Double(nowNanos() - began) / 1e9
        let held = ready.reduce(0) { $0 + $1.held }
        let failed = ready.reduce(0) { $0 + $1.failed } + (processCount - ready.count) * (connections / processCount)
        print("connect: \(held) of \(connections) subscribed in \(String(format: "%.1f", connectSeconds)) s (\(ready.count) of \(processCount) workers ready), failed \(failed)" + (ready.compactMap(\.firstError).first.map { ", first error: \($0)" } ?? ""))

        let counters = Host.tcpCounters()
        let kernel = ["ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "TCPReqQFullDoCookies"].map { name in
            "\(name) +\((counters[name] ?? 0) - (countersBefore[name] ?? 0))"
        }
        print("kernel:  while connecting: " + kernel.joined(separator: ", "))

        try await Task.sleep(for: .milliseconds(Int64(settle * 1000)))
        let idle = common.pid.flatMap(Report.memory)
        if let pid = common.pid, let before, let idle, held > 0 {
            let perConnection = Double(idle.rss - before.rss) / Double(held)
            print("broker:  descriptors open \(Host.descriptors(pid: pid)); VmRSS before \(before.rss) KiB, with \(held) idle connections \(idle.rss) KiB = \(String(format: "%.2f", perConnection)) KiB per connection")
        }
        if let slabBefore, let slab = Host.meminfo("Slab"), held > 0 {
            print("kernel:  Slab \(slabBefore) -> \(slab) KiB = \(String(format: "%.2f", Double(slab - slabBefore) / Double(held))) KiB per connection, both ends (the broker's socket and the client's; whole host)")
        }
        guard messages > 0, held > 0 else {
            try await loop.submit { publisher.finish() }.get()
            return
        }

        var published: [UInt64] = []
        for sequence in 1...messages {
            if sequence > 1 { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
            published.append(try await loop.submit { publisher.publish(sequence: sequence) }.get())
        }
        var reports = await workers.collect(kind: "report", within: drain)
        if reports.count < processCount {
            workers.requestReports()
            reports += await workers.collect(kind: "report", within: 10)
        }
        let heldAtEnd = reports.reduce(0) { $0 + $1.held }
        let complete = reports.reduce(0) { $0 + $1.complete }
        var delivered = 0
        var worst = 0.0
        for (i, sentAt) in published.enumerated() {
            let count = reports.reduce(0) { $0 + ($1.counts.count > i ? $1.counts[i] : 0) }
            let firstAt = reports.compactMap { $0.counts.count > i && $0.counts[i] > 0 ? $0.first[i] : nil }.min() ?? sentAt
            let lastAt = reports.compactMap { $0.counts.count > i && $0.counts[i] > 0 ? $0.last[i] : nil }.max() ?? sentAt
            let lastMillis = Double(lastAt &- sentAt) / 1e6
            worst = max(worst, lastMillis)
            delivered += count
            print("message \(i + 1): delivered \(count) of \(held), publish -> first \(Report.ms(Double(firstAt &- sentAt) / 1e6)) ms, -> last \(Report.ms(lastMillis)) ms")
        }
        let expected = held * messages
        print("broadcast: \(delivered) of \(expected) deliveries (\(String(format: "%.4f", 100 * Double(delivered) / Double(max(1, expected))))%), \(complete) of \(held) connections got every message once and in order, \(heldAtEnd) still held (\(reports.reduce(0) { $0 + $1.lost }) lost); publish -> last delivery at most \(Report.ms(worst)) ms")
        try await loop.submit { publisher.finish() }.get()
        if let after = common.pid.flatMap(Report.memory) {
            print("broker:  VmRSS after the broadcast \(after.rss) KiB, VmHWM \(after.hwm) KiB")
        }
        if complete < held || reports.count < processCount { throw ExitCode.failure }
    }

    /// The command line of a worker, less its share (`--worker-first`, `--worker-count`).
    func workerArguments(topic: String) -> [String] {
        var arguments = [
            "connections", "--url", common.url, "--size", "\(common.size)", "--timeout", "\(common.timeout)",
            "--connections", "\(connections)", "--messages", "\(messages)", "--sources", "\(sources)",
            "--source-start", sourceStart, "--connect-concurrency", "\(connectConcurrency)", "--worker-topic", topic,
        ]
        if common.binary { arguments.append("--binary") }
        if browserHandshake { arguments.append("--browser-handshake") }
        return arguments
    }
}

/// The one publishing connection, in the coordinator. Confined to its event loop.
final class BroadcastPublisher: WSClientDelegate, @unchecked Sendable {
    let topic: String
    let size: Int
    let binary: Bool
    var client: WSClient!
    var connected: EventLoopFuture<Void>
    var finished = false

    init(url: BenchURL, topic: String, size: Int, binary: Bool, loop: any EventLoop) {
        self.topic = topic
        self.size = size
        self.binary = binary
        connected = loop.makeSucceededVoidFuture()
        let (client, future) = WSClient.connect(url: url, on: loop, delegate: self)
        self.client = client
        connected = future
    }

    /// Publishes message `sequence` (non-retained) and returns when it went to the socket.
    func publish(sequence: Int) -> UInt64 {
        if binary {
            client.sendBinary { buffer in
                var payload = ByteBuffer()
                payload.writeInteger(UInt64(sequence))
                payload.writeRepeatingByte(0x78, count: size - 8)
                BinaryCodec.encodePublish(topic: topic, payload: payload, retain: false, ackID: nil, into: &buffer)
            }
        } else {
            client.sendText { buffer in
                buffer.writeStaticString(#"{"op":"publish","topic":"#)
                buffer.writeJSONString(topic)
                buffer.writeStaticString(#","data":""#)
                let digits = String(sequence)
                buffer.writeString(String(repeating: "0", count: max(0, 19 - digits.count)) + digits)
                buffer.writeRepeatingByte(0x78, count: size - 21)
                buffer.writeStaticString(#""}"#)
            }
        }
        let now = nowNanos()
        client.flush()
        return now
    }

    func ready(_ client: WSClient) {}
    func received(_ client: WSClient, payload: ByteBuffer, isBinary: Bool) {}
    func finish() {
        finished = true
        client.close()
    }

    func closed(_ client: WSClient, reason: String) {
        if !finished { print("publisher lost: \(reason)") }
    }
}

enum IPv4 {
    static func parse(_ text: String) -> UInt32? {
        let parts = text.split(separator: ".").compactMap { UInt32($0) }
        guard parts.count == 4, parts.allSatisfy({ $0 < 256 }) else { return nil }
        return parts.reduce(0) { $0 << 8 | $1 }
    }

    static func format(_ address: UInt32) -> String {
        "\(address >> 24).\(address >> 16 & 0xff).\(address >> 8 & 0xff).\(address & 0xff)"
    }
}

enum Host {
    /// A file under /proc/sys (or relative to it), whitespace collapsed.
    static func sysctl(_ path: String) -> String {
        guard let text = try? String(contentsOfFile: "/proc/sys/" + path, encoding: .utf8) else { return "?" }
        return text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    static func loadAverage() -> String {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return "?" }
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// The soft "Max open files" of a process, from /proc/PID/limits.
    static func openFileLimit(pid: Int32) -> String {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Max open files") })
        else { return "?" }
        return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.map(String.init) ?? "?"
    }

    /// TcpExt counters from /proc/net/netstat (this network namespace), e.g. ListenOverflows.
    static func tcpCounters() -> [String: Int] {
        guard let text = try? String(contentsOfFile: "/proc/net/netstat", encoding: .utf8) else { return [:] }
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("TcpExt:") }
        guard lines.count >= 2 else { return [:] }
        let names = lines[0].split(separator: " ").dropFirst()
        let values = lines[1].split(separator: " ").dropFirst().map { Int($0) ?? 0 }
        return Dictionary(zip(names.map(String.init), values), uniquingKeysWith: { a, _ in a })
    }

    /// A /proc/meminfo field in KiB (e.g. "Slab": kernel objects, sockets among them).
    static func meminfo(_ name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") })
        else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    static func descriptors(pid: Int32) -> String {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count).map { "\($0)" } ?? "?"
    }
}
