import BrokerTestSupport
import Foundation
import Testing

/// `broker-cli` end to end: the real `broker` executable and `broker-cli` subprocesses.
@Suite(.spawnsChildProcesses) struct CLIEndToEndTests {
    /// Runs `broker-cli` to completion; returns (exit status, stdout, stderr).
    static func run(_ arguments: [String], stdin: String? = nil, timeout: Duration = .seconds(6)) async throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let child = try ChildProcess("broker-cli", arguments)
        if let stdin { child.writeStdin(stdin) }
        child.closeStdin()
        let status = try await child.waitForExit(timeout: timeout)
        return (status, child.stdout, child.stderr)
    }

    /// Stops a subscriber with SIGINT and expects exit code 0.
    static func interrupt(_ subscriber: ChildProcess) async throws {
        subscriber.interrupt()
        let status = try await subscriber.waitForExit()
        #expect(status == 0, "subscriber exited with \(status): \(subscriber.stderr)")
    }

    /// Decodes one line of `broker-cli subscribe` output.
    static func object(_ line: String) throws -> [String: Any] {
        let value = try JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])
        return try #require(value as? [String: Any], "not a JSON object: \(line)")
    }

    @Test func subscribePrintsWhatPublishSends() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let subscriber = try ChildProcess("broker-cli", ["subscribe", "demo/#", "--url", broker.url])
        defer { subscriber.killNow() }

        // broker-cli prints nothing when it is subscribed, so publish until the line shows up.
        let expected = #"{"topic":"demo/x","data":{"n":1}}"#
        var publishes = 0
        try await eventually("the subscriber to print \(expected); stdout: \(subscriber.stdout) stderr: \(subscriber.stderr)",
                             timeout: .seconds(8), every: .milliseconds(100)) {
            subscriber.stdoutLines.contains(expected)
        } orElse: {
            publishes += 1
            let published = try await Self.run(["publish", "demo/x", #"{"n":1}"#, "--url", broker.url])
            #expect(published.status == 0, "publish failed: \(published.stderr)")
            #expect(published.stdout.isEmpty)  // not retained: no offset printed
        }
        #expect(publishes >= 1)
        // Nothing but that line (possibly more than once, one per publish that arrived).
        #expect(subscriber.stdoutLines.allSatisfy { $0 == expected }, "\(subscriber.stdout)")
        #expect(subscriber.stdoutLines.count <= publishes)

        try await Self.interrupt(subscriber)
        #expect(subscriber.stderr.isEmpty, "\(subscriber.stderr)")
        #expect(try await broker.stop() == 0)
    }

    @Test func retainedMessageIsReplayedToANewSubscriber() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let published = try await Self.run(["publish", "--retain", "sensors/a/temp", "21.5", "--url", broker.url])
        #expect(published.status == 0, "\(published.stderr)")
        let offsetLine = published.stdout.trimmingCharacters(in: .newlines)
        #expect(offsetLine.hasPrefix("offset "), "\(published.stdout)")
        let offset = try #require(Int(offsetLine.dropFirst("offset ".count)))

        let subscriber = try ChildProcess("broker-cli", ["subscribe", "sensors/#", "--url", broker.url])
        defer { subscriber.killNow() }
        let line = try await subscriber.waitForLine("the replayed message") { $0.contains("sensors/a/temp") }
        #expect(line == #"{"topic":"sensors/a/temp","data":21.5,"offset":\#(offset),"replay":true}"#)
        let object = try Self.object(line)
        #expect(object["data"] as? Double == 21.5)
        #expect(object["replay"] as? Bool == true)
        #expect(object["offset"] as? Int == offset)

        // A live retained message follows with its offset and without "replay".
        let next = try await Self.run(["publish", "--retain", "sensors/a/temp", "22", "--url", broker.url])
        #expect(next.status == 0, "\(next.stderr)")
        let nextOffset = try #require(Int(next.stdout.trimmingCharacters(in: .newlines).dropFirst("offset ".count)))
        #expect(nextOffset > offset)
        let liveLine = try await subscriber.waitForLine("the live message") { $0.contains(#""data":22"#) }
        #expect(liveLine == #"{"topic":"sensors/a/temp","data":22,"offset":\#(nextOffset)}"#)

        // --history 0 replays nothing; --since replays what came after.
        let since = try ChildProcess("broker-cli", ["subscribe", "sensors/#", "--since", "\(offset)", "--url", broker.url])
        defer { since.killNow() }
        try await since.waitForLine("the message after --since") { $0.contains(#""data":22"#) }
        #expect(since.stdoutLines == [#"{"topic":"sensors/a/temp","data":22,"offset":\#(nextOffset),"replay":true}"#])

        try await Self.interrupt(since)
        try await Self.interrupt(subscriber)
        #expect(subscriber.stdoutLines.count == 2)
        #expect(try await broker.stop() == 0)
    }

    @Test func publishFromStdinAndBinary() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        // A retained marker tells us when the subscriber is subscribed (it is replayed first).
        let marker = try await Self.run(["publish", "--retain", "--quiet", "lines/ready", "true", "--url", broker.url])
        #expect(marker.status == 0 && marker.stdout.isEmpty, "\(marker)")
        let subscriber = try ChildProcess("broker-cli", ["subscribe", "lines/#", "--url", broker.url])
        defer { subscriber.killNow() }
        try await subscriber.waitForLine("the ready marker") { $0.contains("lines/ready") }

        let published = try await Self.run(["publish", "lines/t", "-", "--url", broker.url], stdin: "{\"i\":1}\nhello world\n\n3\n")
        #expect(published.status == 0, "\(published.stderr)")
        #expect(published.stdout.isEmpty)

        let retained = try await Self.run(["publish", "--retain", "lines/r", "-", "--url", broker.url], stdin: "1\n2\n3")
        #expect(retained.status == 0, "\(retained.stderr)")
        let offsets = retained.stdout.split(separator: "\n").compactMap { Int($0.dropFirst("offset ".count)) }
        #expect(offsets.count == 3 && offsets == offsets.sorted(), "\(retained.stdout)")

        let binary = try await Self.run(["publish", "--binary", "lines/bin", "hello", "--url", broker.url])
        #expect(binary.status == 0, "\(binary.stderr)")

        try await subscriber.waitForLine("the binary message") { $0.contains("lines/bin") }
        let lines = subscriber.stdoutLines
        #expect(lines == [
            #"{"topic":"lines/ready","data":true,"offset":1,"replay":true}"#,
            #"{"topic":"lines/t","data":{"i":1}}"#,
            #"{"topic":"lines/t","data":"hello world"}"#,
            #"{"topic":"lines/t","data":3}"#,
        ] + offsets.enumerated().map { #"{"topic":"lines/r","data":\#($0.offset + 1),"offset":\#($0.element)}"# } + [
            #"{"topic":"lines/bin","binary":"aGVsbG8="}"#,
        ])
        try await Self.interrupt(subscriber)
        #expect(try await broker.stop() == 0)
    }

    @Test func exitCodeThreeWhenTheBrokerIsNotRunning() async throws {
        let url = "ws://127.0.0.1:\(try unusedPort())/ws"
        let publish = try await Self.run(["publish", "t", "1", "--url", url])
        #expect(publish.status == 3, "\(publish)")
        #expect(publish.stderr.hasPrefix("broker-cli: cannot connect to \(url)"), "\(publish.stderr)")
        #expect(publish.stderr.split(separator: "\n").count == 1)
        let subscribe = try await Self.run(["subscribe", "t", "--url", url])
        #expect(subscribe.status == 3, "\(subscribe)")
        let ping = try await Self.run(["ping", "--url", url])
        #expect(ping.status == 3, "\(ping)")
    }

    @Test func exitCodeOneOnAnErrorReply() async throws {
        let broker = try await BrokerProcess.start(["--max-topic-bytes", "16"])
        defer { broker.child.killNow() }
        let refused = try await Self.run(["publish", "$sys/x", "1", "--url", broker.url])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("forbidden"), "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").count == 1)

        let binary = try await Self.run(["publish", "--binary", "$x", "1", "--url", broker.url])
        #expect(binary.status == 1, "\(binary)")

        // Names and filters over this broker's limit (16 bytes) pass the CLI's own checks (the
        // protocol's default 256); the broker refuses them with invalid_topic.
        let long = String(repeating: "a", count: 20)
        let subscribe = try await Self.run(["subscribe", long + "/#", "--url", broker.url, "--history", "0"])
        #expect(subscribe.status == 1, "\(subscribe)")
        #expect(subscribe.stderr.contains("invalid_topic"), "\(subscribe.stderr)")
        let publish = try await Self.run(["publish", long, "1", "--url", broker.url])
        #expect(publish.status == 1, "\(publish)")
        #expect(publish.stderr.contains("invalid_topic"), "\(publish.stderr)")

        let ping = try await Self.run(["ping", "--url", broker.url])
        #expect(ping.status == 0, "\(ping)")
        #expect(ping.stdout.hasPrefix("connected to \(broker.url)"), "\(ping.stdout)")
        #expect(try await broker.stop() == 0)
    }

    @Test func exitCodeTwoOnBadArguments() async throws {
        // None of these need a broker: bad arguments are refused before connecting.
        let url = "ws://127.0.0.1:\(try unusedPort())/ws"
        let cases: [[String]] = [
            ["publish"],
            ["publish", "t"],
            ["publish", "a/+", "1", "--url", url],
            ["publish", "t", "1", "--file", "/nonexistent", "--url", url],
            ["publish", "t", "--file", "/nonexistent/file", "--url", url],
            ["publish", "t", "1", "--url", "http://127.0.0.1/ws"],
            ["publish", "t", "1", "--timeout", "0", "--url", url],
            ["subscribe"],
            ["subscribe", "a/#/b", "--url", url],
            ["subscribe", "t", "--history", "-1", "--url", url],
            ["subscribe", "t", "--since", "x", "--url", url],
            ["frobnicate"],
            ["publish", "t", "1", "--no-such-option", "--url", url],
        ]
        try await withThrowingTaskGroup(of: ([String], Int32, String).self) { group in
            for arguments in cases {
                group.addTask {
                    let result = try await Self.run(arguments)
                    return (arguments, result.status, result.stderr)
                }
            }
            for try await (arguments, status, stderr) in group {
                #expect(status == 2, "broker-cli \(arguments) exited with \(status): \(stderr)")
                #expect(!stderr.isEmpty, "broker-cli \(arguments) printed no error")
            }
        }
    }
}
