import BrokerProtocol
import BrokerTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// SIGHUP in the `broker` executable: the configuration file is read again, a new token, a new
/// limit and a new log level take effect, and the log names each changed setting (never its
/// value) and warns about one that needs a restart.
@Suite(.spawnsChildProcesses) struct ProcessReloadTests {
    static let oldToken = "tok-old-5c1e9a"
    static let newToken = "tok-new-7b2d4f"

    func upgrade(port: Int, token: String) async throws -> RawWebSocketClient {
        try await RawWebSocketClient.connect(port: port, extraHeaders: ["Authorization: Bearer \(token)"], expectUpgrade: false)
    }

    /// The answers to subscribing to `a`, `b` and `c`: "ok" or the error code.
    func subscribeThree(_ client: RawWebSocketClient) async throws -> [String] {
        var answers: [String] = []
        for (n, topic) in ["a", "b", "c"].enumerated() {
            try await client.sendText(#"{"op":"subscribe","topic":"\#(topic)","history":0,"id":\#(n)}"#)
            switch try await client.nextMessage() {
            case .subscribed: answers.append("ok")
            case .error(let code, _, _): answers.append(code)
            case let other: answers.append("\(other)")
            }
        }
        return answers
    }

    @Test func sighupReloadsTokensLimitsAndLogLevel() async throws {
        let directory = temporaryDirectory("broker-reload")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { removeDirectory(directory) }
        let file = directory + "/broker.yaml"
        try """
            max-subscriptions: 1
            auth:
              client-tokens: [\(Self.oldToken)]
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let broker = try ChildProcess("broker", ["serve", "--config", file, "--port", "0", "--data-dir", directory + "/data"])
        let port = try await broker.listeningPort()

        let before = try await upgrade(port: port, token: Self.oldToken)
        #expect(before.handshakeResponse.hasPrefix("HTTP/1.1 101"))
        _ = try await before.nextMessage()
        #expect(try await subscribeThree(before) == ["ok", "too_many_subscriptions", "too_many_subscriptions"])

        try """
            max-subscriptions: 2
            replay-page-size: 64
            auth:
              client-tokens: [\(Self.newToken)]
            log:
              level: debug
            """.write(toFile: file, atomically: true, encoding: .utf8)
        broker.signal(SIGHUP)
        try await eventually("the reload's log lines; stderr: \(broker.stderr)") {
            broker.stderr.contains("takes effect after a restart")
        }
        let log = broker.stderr
        let reloaded = log.split(separator: "\n").filter { $0.contains("setting reloaded") }
        #expect(reloaded.count == 3, "\(reloaded)")
        for key in ["max-subscriptions", "auth.client-tokens", "log.level"] {
            #expect(reloaded.contains { $0.contains("key=\(key) ") }, "no line for \(key): \(reloaded)")
        }
        #expect(log.split(separator: "\n").contains { $0.contains("warning") && $0.contains("key=replay-page-size ") })
        #expect(!log.contains(Self.oldToken) && !log.contains(Self.newToken), "a token value reached the log")
        // At info, before the reload, refused requests were not logged.
        #expect(!log.contains("request refused"))

        // The new token admits, the old one no longer does; the new limit holds for a new
        // connection, and a refusal is now logged at debug.
        let refused = try await upgrade(port: port, token: Self.oldToken)
        #expect(refused.handshakeResponse.hasPrefix("HTTP/1.1 401"), "\(refused.handshakeResponse)")
        await refused.close()
        let after = try await upgrade(port: port, token: Self.newToken)
        #expect(after.handshakeResponse.hasPrefix("HTTP/1.1 101"), "\(after.handshakeResponse)")
        _ = try await after.nextMessage()
        #expect(try await subscribeThree(after) == ["ok", "ok", "too_many_subscriptions"])
        try await eventually("a refusal logged at debug; stderr: \(broker.stderr)") {
            broker.stderr.contains("request refused")
        }

        // A file that does not parse changes nothing.
        try "max-subscriptions: many\n".write(toFile: file, atomically: true, encoding: .utf8)
        broker.signal(SIGHUP)
        try await eventually("the failed reload's log line; stderr: \(broker.stderr)") {
            broker.stderr.contains("reload failed, nothing changed")
        }
        let still = try await upgrade(port: port, token: Self.newToken)
        #expect(still.handshakeResponse.hasPrefix("HTTP/1.1 101"))
        await still.close()

        await before.close()
        await after.close()
        broker.signal(SIGTERM)
        #expect(try await broker.waitForExit(timeout: .seconds(15)) == 0, "stderr: \(broker.stderr)")
    }
}
