import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Cluster mode when things break: a broker killed behind a real HAProxy, PostgreSQL stopped and
/// started again. Each test has a PostgreSQL server of its own (one of them restarts it).
@Suite(
    .serialized,
    .enabled(if: PostgresServer.isAvailable && LoadBalancer.isAvailable,
             "PostgreSQL (initdb) or HAProxy is not installed, or child processes are off: cluster failure tests skipped"))
struct ClusterFailureTests {
    /// A subscriber behind the load balancer loses its broker to `kill -9`, reconnects through
    /// the load balancer to another one and resumes with since/epoch: every acknowledged message
    /// exactly once, in offset order.
    @Test func killedNodeClientsResumeExactlyOnceOnAnother() async throws {
        let postgres = try await PostgresServer.start()
        defer { postgres.stop() }
        let cluster = try await BrokerCluster.start(url: try await postgres.makeDatabase(), nodes: ["n1", "n2", "n3"])
        defer { cluster.kill() }
        let balancer = try LoadBalancer.start(backends: cluster.ports)
        defer { balancer.stop() }
        try await balancer.waitUntilAllUp(cluster.ports)

        var subscriber = try await RawWebSocketClient.connect(port: balancer.port)
        guard case .welcome(let welcome) = try await subscriber.nextMessage(timeout: .seconds(30)) else { throw TestFailure("no welcome") }
        let victim = try #require(["n1", "n2", "n3"].firstIndex(of: welcome.node ?? ""))
        try await subscriber.sendText(#"{"op":"subscribe","topic":"k/#","history":0,"id":"s"}"#)
        guard case .subscribed = try await subscriber.nextMessage(timeout: .seconds(30)) else { throw TestFailure("not subscribed") }
        // The publisher talks to another broker directly.
        let publisher = try await RawWebSocketClient.connect(port: cluster.ports[(victim + 1) % 3])
        _ = try await publisher.nextMessage()

        var acked: [UInt64] = []
        func publish(_ range: Range<Int>) async throws {
            for n in range {
                try await publisher.sendText(#"{"op":"publish","topic":"k/\#(n % 4)","data":\#(n),"retain":true,"id":\#(n)}"#)
            }
            var count = 0
            while count < range.count {
                guard case .ack(_, let offset?) = try await publisher.nextMessage(timeout: .seconds(30)) else { continue }
                acked.append(offset)
                count += 1
            }
        }
        var received: [UInt64] = []
        try await publish(0..<100)
        while received.count < 30 {
            guard case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(30)) else { continue }
            received.append(delivery.offset!)
        }
        cluster.children[victim].killNow()
        // Read what the dying connection still delivers, to its end.
        while true {
            guard let message = try? await subscriber.nextMessage(timeout: .seconds(30)) else { break }
            if case .message(let delivery) = message { received.append(delivery.offset!) }
        }
        await subscriber.close()
        try await publish(100..<200)

        // Reconnect through the load balancer (it may still try the dead broker once or twice).
        var resumedOn: String?
        try await eventually("a reconnection through the load balancer", timeout: .seconds(60)) {
            guard let client = try? await RawWebSocketClient.connect(port: balancer.port),
                case .welcome(let again)? = try? await client.nextMessage(timeout: .seconds(10))
            else { return false }
            subscriber = client
            resumedOn = again.node
            #expect(again.epoch == welcome.epoch)
            return true
        }
        #expect(resumedOn != welcome.node)
        try await subscriber.sendText(#"{"op":"subscribe","topic":"k/#","since":\#(received.last!),"epoch":"\#(welcome.epoch)","id":"r"}"#)
        while received.count < acked.count {
            switch try await subscriber.nextMessage(timeout: .seconds(30)) {
            case .message(let delivery): received.append(delivery.offset!)
            case .subscribed(_, _, let recovered): #expect(recovered == true)
            default: break
            }
        }
        #expect(received == acked.sorted())
        await subscriber.close()
        await publisher.close()
    }

    /// PostgreSQL stops: publishes get an error, /readyz answers 503. It starts again: the
    /// brokers reconnect, /readyz is 200, publishing works, and a subscriber connected throughout
    /// receives every acknowledged message exactly once. Stopped once more, the brokers still
    /// shut down cleanly on SIGTERM.
    @Test func postgresRestartFailsPublishesThenRecoversWithoutLoss() async throws {
        let postgres = try await PostgresServer.start()
        defer { postgres.stop() }
        let cluster = try await BrokerCluster.start(url: try await postgres.makeDatabase(), nodes: ["p1", "p2"])
        defer { cluster.kill() }
        let publisher = try await RawWebSocketClient.connect(port: cluster.ports[0])
        _ = try await publisher.nextMessage()
        let subscriber = try await RawWebSocketClient.connect(port: cluster.ports[1])
        _ = try await subscriber.nextMessage()
        try await subscriber.sendText(#"{"op":"subscribe","topic":"r/#","history":0,"id":"s"}"#)
        guard case .subscribed = try await subscriber.nextMessage(timeout: .seconds(30)) else { throw TestFailure("not subscribed") }

        var acked: [UInt64] = []
        var nextID = 0
        /// Publishes one retained message; its offset, or nil when the broker answered an error.
        func publishOne() async throws -> UInt64? {
            nextID += 1
            try await publisher.sendText(#"{"op":"publish","topic":"r/x","data":\#(nextID),"retain":true,"id":\#(nextID)}"#)
            while true {
                switch try await publisher.nextMessage(timeout: .seconds(60)) {
                case .ack(_, let offset?): acked.append(offset); return offset
                case .error: return nil
                default: continue
                }
            }
        }
        for _ in 0..<20 { #expect(try await publishOne() != nil) }

        try await postgres.stopServer(mode: "fast")
        #expect(try await publishOne() == nil)
        try await eventually("/readyz 503 on every node", timeout: .seconds(60)) {
            for port in cluster.ports where try await HTTPTestClient.request("GET", "/readyz", port: port).status != 503 {
                return false
            }
            return true
        }

        try await postgres.startServer()
        try await eventually("/readyz 200 on every node", timeout: .seconds(60)) {
            for port in cluster.ports where try await HTTPTestClient.request("GET", "/readyz", port: port).status != 200 {
                return false
            }
            return true
        }
        for _ in 0..<20 { #expect(try await publishOne() != nil) }

        var received: [UInt64] = []
        while received.count < acked.count {
            guard case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(30)) else { continue }
            received.append(delivery.offset!)
        }
        #expect(received == acked)
        await publisher.close()
        await subscriber.close()
        // PostgreSQL gone again: SIGTERM still stops every broker cleanly.
        try await postgres.stopServer(mode: "fast")
        try await cluster.stop()
    }
}

/// HAProxy in front of the brokers: round robin, health-checked on `/readyz`.
struct LoadBalancer {
    let process: BackgroundCommand
    let port: Int
    let statsPort: Int
    let directory: String

    static let executable: String? = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "/usr/bin/haproxy"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }
    static var isAvailable: Bool { executable != nil }

    static func start(backends: [Int]) throws -> LoadBalancer {
        guard let executable else { throw TestFailure("haproxy is not installed") }
        let directory = temporaryDirectory("broker-haproxy")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let port = try unusedPort(), statsPort = try unusedPort()
        let servers = backends.enumerated().map { "    server b\($0.offset) 127.0.0.1:\($0.element) check" }
        let configuration = """
            global
                maxconn 4096
            defaults
                mode http
                timeout connect 2s
                timeout client 120s
                timeout server 120s
                timeout tunnel 120s
            frontend brokers
                bind 127.0.0.1:\(port)
                default_backend brokers
            frontend stats
                bind 127.0.0.1:\(statsPort)
                http-request return status 200 content-type text/plain lf-string "%[nbsrv(brokers)]"
            backend brokers
                balance roundrobin
                option httpchk GET /readyz
                http-check expect status 200
                default-server inter 200ms fall 2 rise 2
            \(servers.joined(separator: "\n"))

            """
        let path = directory + "/haproxy.cfg"
        try configuration.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try BackgroundCommand([executable, "-db", "-f", path])
        return LoadBalancer(process: process, port: port, statsPort: statsPort, directory: directory)
    }

    /// Waits until HAProxy's health checks see every backend up.
    func waitUntilAllUp(_ backends: [Int]) async throws {
        try await eventually("HAProxy to see every broker up", timeout: .seconds(60)) {
            guard let response = try? await HTTPTestClient.request("GET", "/", port: statsPort) else { return false }
            return response.body.trimmingCharacters(in: .whitespacesAndNewlines) == String(backends.count)
        }
    }

    func stop() {
        process.stop()
        removeDirectory(directory)
    }
}
