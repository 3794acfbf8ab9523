import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three `broker` processes sharing one real PostgreSQL (cluster mode, docs/cluster.md), driven
/// over real sockets.
@Suite(
    .serialized,
    .enabled(if: PostgresServer.isAvailable, "PostgreSQL (initdb) is not installed, or child processes are off: cluster tests skipped"))
struct ClusterIntegrationTests {
    @Test func publishOnOneNodeReachesTheOthersInOrderAndResumesExactlyOnceElsewhere() async throws {
        let url = try await PostgresServer.shared().makeDatabase()
        let cluster = try await BrokerCluster.start(url: url, nodes: ["node-a", "node-b", "node-c"])
        defer { cluster.kill() }

        // welcome names the node; the epoch is the cluster's.
        var welcomes: [Welcome] = []
        var clients: [RawWebSocketClient] = []
        for port in cluster.ports {
            let client = try await RawWebSocketClient.connect(port: port)
            guard case .welcome(let welcome) = try await client.nextMessage() else { throw TestFailure("no welcome") }
            welcomes.append(welcome)
            clients.append(client)
        }
        #expect(welcomes.map(\.node) == ["node-a", "node-b", "node-c"])
        #expect(Set(welcomes.map(\.epoch)).count == 1)
        let (publisher, subscriberB, subscriberC) = (clients[0], clients[1], clients[2])
        for subscriber in [subscriberB, subscriberC] {
            try await subscriber.sendText(#"{"op":"subscribe","topic":"orders/#","history":0,"id":"s"}"#)
            guard case .subscribed = try await subscriber.nextMessage(timeout: .seconds(30)) else { throw TestFailure("not subscribed") }
        }

        // Retained and live messages of one publisher, interleaved: every subscriber gets them
        // all, in publish order, the retained ones with their offsets.
        let count = 60
        var offsets: [Int: UInt64] = [:]
        for n in 0..<count {
            try await publisher.sendText(#"{"op":"publish","topic":"orders/\#(n % 3)","data":\#(n),"retain":\#(n % 2 == 0),"id":\#(n)}"#)
        }
        var acks = 0
        while acks < count {
            guard case .ack(let id, let offset) = try await publisher.nextMessage(timeout: .seconds(30)) else { continue }
            acks += 1
            if let n = Int(id.json), let offset { offsets[n] = offset }
        }
        #expect(offsets.count == count / 2)
        for subscriber in [subscriberB, subscriberC] {
            var received: [(Int, UInt64?)] = []
            while received.count < count {
                guard case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(30)) else { continue }
                received.append((Int(String(buffer: delivery.payload))!, delivery.offset))
            }
            #expect(received.map(\.0) == Array(0..<count))
            #expect(received.compactMap(\.1) == (0..<count).compactMap { offsets[$0] })
        }

        // A client that saw up to the 10th retained message resumes on node C: exactly the
        // retained messages after it, recovered, then live delivery without gap or duplicate
        // while node A keeps publishing.
        let seen = offsets[18]!
        let resumer = try await RawWebSocketClient.connect(port: cluster.ports[2])
        _ = try await resumer.nextMessage()
        let epoch = welcomes[0].epoch
        try await resumer.sendText(#"{"op":"subscribe","topic":"orders/#","since":\#(seen),"epoch":"\#(epoch)","id":"r"}"#)
        for n in count..<(count + 20) {
            try await publisher.sendText(#"{"op":"publish","topic":"orders/\#(n % 3)","data":\#(n),"retain":true}"#)
        }
        var resumed: [UInt64] = []
        var recovered: Bool?
        while resumed.count < (count / 2 - 10) + 20 {
            switch try await resumer.nextMessage(timeout: .seconds(30)) {
            case .subscribed(_, _, let flag): recovered = flag
            case .message(let delivery): resumed.append(delivery.offset ?? 0)
            default: break
            }
        }
        #expect(recovered == true)
        let expectedFirst = (20..<count).compactMap { offsets[$0] }
        #expect(Array(resumed.prefix(expectedFirst.count)) == expectedFirst)
        #expect(resumed == resumed.sorted() && Set(resumed).count == resumed.count)
        #expect(resumed.last == expectedFirst.last! + 20)

        // The HTTP API publishes across nodes too: a live message on A's, then a retained one.
        for (retain, data) in [(false, "1001"), (true, "1002")] {
            let response = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=orders/http\(retain ? "&retain=true" : "")", port: cluster.ports[0],
                headers: ["Content-Type: application/json"], body: Array(data.utf8))
            #expect(response.status == 200, "\(response.body)")
        }
        for subscriber in [subscriberB, subscriberC] {
            var texts: [String] = []
            while texts.count < 2 + 20 {
                guard case .message(let delivery) = try await subscriber.nextMessage(timeout: .seconds(30)) else { continue }
                texts.append(String(buffer: delivery.payload))
            }
            #expect(Array(texts.suffix(2)) == ["1001", "1002"])
        }

        for client in clients + [resumer] { await client.close() }
        try await cluster.stop()
    }
}

/// `broker serve` processes in cluster mode on one PostgreSQL database.
struct BrokerCluster {
    var children: [ChildProcess]
    var ports: [Int]
    var directories: [String]

    static func start(url: String, nodes: [String], extraArguments: [String] = []) async throws -> BrokerCluster {
        var cluster = BrokerCluster(children: [], ports: [], directories: [])
        for node in nodes {
            let directory = temporaryDirectory("broker-cluster")
            let child = try ChildProcess("broker", [
                "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", directory,
                "--cluster-postgres-url", url, "--cluster-node-name", node,
            ] + extraArguments)
            cluster.children.append(child)
            cluster.directories.append(directory)
            cluster.ports.append(try await child.listeningPort(timeout: .seconds(60)))
        }
        return cluster
    }

    /// SIGTERM, and a clean exit of every node.
    func stop() async throws {
        for child in children { child.signal(SIGTERM) }
        for child in children {
            let status = try await child.waitForExit(timeout: .seconds(30))
            #expect(status == 0, "stderr: \(child.stderr)")
        }
        directories.forEach(removeDirectory)
    }

    func kill() {
        children.forEach { $0.killNow() }
    }
}
