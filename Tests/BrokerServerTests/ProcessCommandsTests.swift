import BrokerTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `broker` executable's helper commands, run as a user runs them: `healthcheck` (the Docker
/// image's HEALTHCHECK), `retained clear` over the HTTP API (NIO, no URLSession), and the shell
/// completion scripts of `broker` and `broker-cli`.
@Suite(.spawnsChildProcesses) struct ProcessCommandsTests {
    @Test func healthcheckAsksTheBrokerTheSettingsDescribe() async throws {
        let data = temporaryDirectory("broker-healthcheck")
        defer { removeDirectory(data) }
        let broker = try ChildProcess("broker", ["serve", "--port", "0", "--data-dir", data])
        let port = try await broker.listeningPort()

        // As in the image: the port from the environment, the host 0.0.0.0 asked on loopback.
        let healthy = try ChildProcess("broker", ["healthcheck"], environment: ["BROKER_PORT": "\(port)", "BROKER_HOST": "0.0.0.0"])
        #expect(try await healthy.waitForExit(timeout: .seconds(10)) == 0, "stderr: \(healthy.stderr)")
        #expect(healthy.stdout == "ok\n")

        broker.signal(SIGTERM)
        #expect(try await broker.waitForExit(timeout: .seconds(10)) == 0)
        let down = try ChildProcess("broker", ["healthcheck", "--port", "\(port)"])
        #expect(try await down.waitForExit(timeout: .seconds(10)) == 1)
        #expect(down.stderr.contains("cannot connect"), "\(down.stderr)")
    }

    @Test func retainedClearOverTheHTTPAPI() async throws {
        let data = temporaryDirectory("broker-clear")
        defer { removeDirectory(data) }
        let key = "clear-key-8d1f20c4"
        let broker = try ChildProcess("broker", ["serve", "--port", "0", "--data-dir", data], environment: ["BROKER_AUTH_API_KEY": key])
        let port = try await broker.listeningPort()
        let publisher = try await RawWebSocketClient.connect(port: port, extraHeaders: ["Authorization: Bearer \(key)"])
        _ = try await publisher.nextMessage()
        for (n, topic) in ["a/x", "a/y", "b/x"].enumerated() {
            try await publisher.sendText(#"{"op":"publish","topic":"\#(topic)","data":\#(n),"retain":true,"id":\#(n)}"#)
            guard case .ack = try await publisher.nextMessage() else { throw TestFailure("no ack for \(topic)") }
        }
        await publisher.close()
        let url = "http://127.0.0.1:\(port)"

        let refused = try ChildProcess("broker", ["retained", "clear", "a/+", "--url", url])
        #expect(try await refused.waitForExit(timeout: .seconds(10)) == 1)
        #expect(refused.stderr.contains("clear refused"), "\(refused.stderr)")

        // `+` travels as a wildcard, not as an encoded space.
        let cleared = try ChildProcess("broker", ["retained", "clear", "a/+", "--url", url, "--api-key", key])
        #expect(try await cleared.waitForExit(timeout: .seconds(10)) == 0, "stderr: \(cleared.stderr)")
        #expect(cleared.stdout == "cleared 2 retained message(s) matching a/+\n")
        let again = try ChildProcess("broker", ["retained", "clear", "#", "--url", url], environment: ["BROKER_AUTH_API_KEY": key])
        #expect(try await again.waitForExit(timeout: .seconds(10)) == 0, "stderr: \(again.stderr)")
        #expect(again.stdout == "cleared 1 retained message(s) matching #\n")

        broker.signal(SIGTERM)
        #expect(try await broker.waitForExit(timeout: .seconds(10)) == 0)
        let unreachable = try ChildProcess("broker", ["retained", "clear", "#", "--url", url])
        #expect(try await unreachable.waitForExit(timeout: .seconds(10)) == 1)
        #expect(unreachable.stderr.contains("cannot reach the broker"), "\(unreachable.stderr)")
    }

    @Test(arguments: [("broker", "bash"), ("broker", "zsh"), ("broker", "fish"), ("broker-cli", "bash"), ("broker-cli", "zsh"), ("broker-cli", "fish")])
    func completionScripts(executable: String, shell: String) async throws {
        let child = try ChildProcess(executable, ["--generate-completion-script", shell])
        #expect(try await child.waitForExit(timeout: .seconds(10)) == 0, "stderr: \(child.stderr)")
        let script = child.stdout
        // Subcommands and options of the command, not just a header (fish writes `-l 'config'`).
        let words = executable == "broker"
            ? ["serve", "healthcheck", "retained", "token", "config"]
            : ["subscribe", "publish", "retained", "context", "count"]
        for word in words { #expect(script.contains(word), "\(executable) \(shell) script lacks \(word)") }
        switch shell {
        case "bash": #expect(script.contains("-F _") && script.contains(" \(executable)\n"))
        case "zsh": #expect(script.hasPrefix("#compdef \(executable)"))
        default: #expect(script.contains("complete -c '\(executable)'"))
        }
    }
}
