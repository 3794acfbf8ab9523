import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `broker` executable's lifecycle: SIGTERM drains, exit codes, configuration at start.
@Suite(.serialized, .spawnsChildProcesses) struct ProcessLifecycleTests {
    @Test func sigtermDrainsAndKeepsEveryAcknowledgedRetainedMessage() async throws {
        let data = temporaryDirectory("broker-lifecycle")
        defer { removeDirectory(data) }
        let broker = try ChildProcess("broker", ["serve", "--port", "0", "--data-dir", data, "--shutdown-grace", "3"])
        let port = try await broker.listeningPort()

        let subscriber = try await RawWebSocketClient.connect(port: port)
        _ = try await subscriber.nextMessage()
        let publisher = try await RawWebSocketClient.connect(port: port)
        _ = try await publisher.nextMessage()

        // A first batch, acknowledged; then a second one still in flight when SIGTERM arrives.
        var acked: [UInt64] = []
        for n in 0..<50 {
            try await publisher.sendText(#"{"op":"publish","topic":"drain/\#(n % 5)","data":\#(n),"retain":true,"id":\#(n)}"#)
        }
        while acked.count < 50 {
            guard case .ack(_, let offset?) = try await publisher.nextMessage() else { continue }
            acked.append(offset)
        }
        for n in 50..<300 {
            try await publisher.sendText(#"{"op":"publish","topic":"drain/\#(n % 5)","data":\#(n),"retain":true,"id":\#(n)}"#)
        }
        broker.signal(SIGTERM)

        // Every client sees 1001; acks that arrive before it count as acknowledged.
        var publisherClose: UInt16?
        while publisherClose == nil {
            let frame = try await publisher.nextFrame()
            if frame.opcode == 0x8 {
                publisherClose = frame.closeCode
            } else if frame.opcode == 0x1, case .ack(_, let offset?) = try ServerMessage.parseText(ByteBuffer(bytes: frame.payload)) {
                acked.append(offset)
            }
        }
        #expect(publisherClose == 1001)
        #expect(try await subscriber.expectClose() == 1001)
        // Answer the close handshakes so the drain ends before the grace period. A slow run (a
        // sanitizer) may reach this after the grace period, when the broker has already dropped
        // the connections: then there is nothing left to answer.
        try? await publisher.send(opcode: 0x8, payload: [0x03, 0xE9])
        try? await subscriber.send(opcode: 0x8, payload: [0x03, 0xE9])
        let status = try await broker.waitForExit(timeout: .seconds(8))
        #expect(status == 0, "stderr: \(broker.stderr)")
        await publisher.close()
        await subscriber.close()

        // Restart on the same directory: every acknowledged message replays.
        let restarted = try ChildProcess("broker", ["serve", "--port", "0", "--data-dir", data])
        let newPort = try await restarted.listeningPort()
        let reader = try await RawWebSocketClient.connect(port: newPort)
        _ = try await reader.nextMessage()
        try await reader.sendText(##"{"op":"subscribe","topic":"drain/#","since":0,"id":"s"}"##)
        // A request made during a replay is answered after it: the pong ends the replay.
        try await reader.sendText(#"{"op":"ping","id":"end"}"#)
        var replayed = Set<UInt64>()
        while true {
            let message = try await reader.nextMessage()
            if case .pong = message { break }
            if case .message(let delivery) = message, let offset = delivery.offset { replayed.insert(offset) }
        }
        let lost = Set(acked).subtracting(replayed)
        #expect(lost.isEmpty, "acknowledged but lost: \(lost.sorted())")
        #expect(acked.count >= 50)
        await reader.close()
        restarted.signal(SIGTERM)
        #expect(try await restarted.waitForExit(timeout: .seconds(8)) == 0)
    }

    @Test func exitCodes() async throws {
        // A bad setting: 64, naming it.
        let badFlag = try ChildProcess("broker", ["serve", "--port", "99999"])
        #expect(try await badFlag.waitForExit(timeout: .seconds(10)) == 64)
        #expect(badFlag.stderr.contains("port"))
        let badEnvironment = try ChildProcess("broker", ["serve"], environment: ["BROKER_LOG_FORMAT": "xml"])
        #expect(try await badEnvironment.waitForExit(timeout: .seconds(10)) == 64)
        #expect(badEnvironment.stderr.contains("BROKER_LOG_FORMAT"))
        // Unusable TLS files: 6.
        let data = temporaryDirectory("broker-lifecycle")
        defer { removeDirectory(data) }
        let badTLS = try ChildProcess("broker", [
            "serve", "--port", "0", "--data-dir", data, "--tls-certificate", "/nonexistent.pem", "--tls-key", "/nonexistent.key",
        ])
        #expect(try await badTLS.waitForExit(timeout: .seconds(10)) == 6)
    }

    @Test func configCheckCommand() async throws {
        let directory = temporaryDirectory("broker-lifecycle")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { removeDirectory(directory) }
        let bad = directory + "/bad.yaml"
        try "port: 80\nlisten: 1\nretain:\n  max-age: never\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let check = try ChildProcess("broker", ["config", "check", bad])
        #expect(try await check.waitForExit(timeout: .seconds(10)) == 78)
        #expect(check.stderr.contains("\(bad):2: listen: unknown key"))
        #expect(check.stderr.contains("\(bad):4: retain.max-age: expected a number of seconds"))
        let good = directory + "/good.toml"
        try "port = 80\n[log]\nformat = \"json\"\n".write(toFile: good, atomically: true, encoding: .utf8)
        let ok = try ChildProcess("broker", ["config", "check", good])
        #expect(try await ok.waitForExit(timeout: .seconds(10)) == 0)
        #expect(ok.stdout == "\(good): ok\n")
    }

    /// The executable's `config show`: the effective settings, with no secret in them.
    @Test func configShowRedactsSecrets() async throws {
        let show = try ChildProcess(
            "broker", ["config", "show", "--port", "9", "--auth-api-key", "flag-secret"],
            environment: ["BROKER_AUTH_CLIENT_TOKENS": "env-token-1,env-token-2"])
        #expect(try await show.waitForExit(timeout: .seconds(10)) == 0)
        #expect(show.stdout.contains("port: \"9\"\n"))
        #expect(show.stdout.contains("  api-key: \"<redacted>\"\n"))
        #expect(show.stdout.contains("  client-tokens: [\"<redacted>\", \"<redacted>\"]\n"))
        #expect(!show.stdout.contains("flag-secret") && !show.stdout.contains("env-token"))
        #expect(!show.stderr.contains("flag-secret") && !show.stderr.contains("env-token"))
    }

    @Test func startsFromEnvironmentAloneWithJSONLogs() async throws {
        let data = temporaryDirectory("broker-lifecycle")
        defer { removeDirectory(data) }
        let broker = try ChildProcess(
            "broker", [], environment: ["BROKER_PORT": "0", "BROKER_DATA_DIR": data, "BROKER_LOG_FORMAT": "json", "BROKER_AUTH_API_KEY": "k"])
        // The port is in the JSON log line: {"...","msg":"listening","address":"[IPv4]127.0.0.1/127.0.0.1:PORT",...}
        var port: Int?
        let deadline = ContinuousClock.now + .seconds(15)
        while port == nil, ContinuousClock.now < deadline {
            for line in broker.stderr.split(separator: "\n") where line.contains(#""msg":"listening""#) {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
                port = object?["address"].flatMap { $0.split(separator: ":").last.flatMap { Int($0) } }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard let port else {
            Issue.record("no JSON listening line: \(broker.stderr)")
            return
        }
        #expect(try await HTTPTestClient.request("GET", "/api/stats", port: port).status == 401)
        #expect(try await HTTPTestClient.request("GET", "/api/stats", port: port, headers: ["X-API-Key: k"]).status == 200)
        let metrics = try await HTTPTestClient.request("GET", "/metrics", port: port, headers: ["X-API-Key: k"])
        #expect(metrics.body.contains("broker_connections"))
        #expect(metrics.body.contains("# HELP broker_connections Open WebSocket connections.\n# TYPE broker_connections gauge"))
        broker.signal(SIGINT)
        #expect(try await broker.waitForExit(timeout: .seconds(10)) == 0)
    }
}
