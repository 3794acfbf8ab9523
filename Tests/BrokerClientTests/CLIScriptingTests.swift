import BrokerTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// `broker-cli` as scripts use it, end to end against the real `broker` executable: exiting after
/// a count or a wait, several filters, templates, resuming with an epoch, whole-stdin and repeated
/// publishes, the HTTP API commands, contexts, TLS switches and completion scripts.
@Suite(.spawnsChildProcesses) struct CLIScriptingTests {
    static func run(_ arguments: [String], stdin: String? = nil, environment: [String: String] = [:])
        async throws -> (status: Int32, stdout: String, stderr: String)
    {
        let child = try ChildProcess("broker-cli", arguments, environment: environment)
        if let stdin { child.writeStdin(stdin) }
        child.closeStdin()
        let status = try await child.waitForExit(timeout: .seconds(10))
        return (status, child.stdout, child.stderr)
    }

    static func lines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).dropLast(text.hasSuffix("\n") ? 1 : 0).map(String.init)
    }

    /// Publishes `data` retained to `topic`; returns its offset.
    @discardableResult
    static func retain(_ topic: String, _ data: String, _ broker: BrokerProcess) async throws -> Int {
        let result = try await run(["publish", "-r", topic, data, "--url", broker.url])
        #expect(result.status == 0, "\(result)")
        return try #require(Int(result.stdout.trimmingCharacters(in: .newlines).dropFirst("offset ".count)), "\(result.stdout)")
    }

    @Test func countExitsAfterNMessagesOfSeveralFilters() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let first = try await Self.retain("c/1", "1", broker)
        let second = try await Self.retain("c/2", #""two""#, broker)
        let third = try await Self.retain("d/1", #"{"n":3}"#, broker)
        try await Self.retain("e/1", "4", broker)

        let result = try await Self.run([
            "subscribe", "c/#", "d/+", "--since", "0", "-C", "3", "--format", "{offset} {topic} {data}", "--url", broker.url,
        ])
        #expect(result.status == 0, "\(result)")
        #expect(Set(Self.lines(result.stdout)) == [#"\#(first) c/1 1"#, #"\#(second) c/2 "two""#, #"\#(third) d/1 {"n":3}"#])
    }

    @Test func aMessageMatchingSeveralFiltersIsPrintedOnce() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        try await Self.retain("o/1", "1", broker)
        try await Self.retain("o/2", "2", broker)
        // Both filters match both messages; with duplicates the count of 3 would be reached.
        let result = try await Self.run([
            "subscribe", "o/#", "o/+", "#", "--since", "0", "--count", "3", "--wait", "1", "--raw", "--url", broker.url,
        ])
        #expect(result.status == 4, "\(result)")
        #expect(Self.lines(result.stdout) == ["1", "2"])
    }

    @Test func waitEndsWithFourBeforeTheCountAndZeroWithoutOne() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let short = try await Self.run(["subscribe", "q/#", "-C", "1", "-W", "0.5", "--url", broker.url])
        #expect(short.status == 4, "\(short)")
        #expect(short.stdout.isEmpty && short.stderr.isEmpty, "\(short)")
        let plain = try await Self.run(["subscribe", "q/#", "-W", "0.5", "--url", broker.url])
        #expect(plain.status == 0, "\(plain)")

        // A count reached before the wait is 0 (the retained message is replayed at once).
        try await Self.retain("q/1", "1", broker)
        let reached = try await Self.run(["subscribe", "q/#", "-C", "1", "-W", "60", "--url", broker.url])
        #expect(reached.status == 0, "\(reached)")
        #expect(Self.lines(reached.stdout) == [#"{"topic":"q/1","data":1,"offset":1,"replay":true}"#])
    }

    @Test func resumeWithTheEpochAScriptKept() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let first = try await Self.retain("r/a", "1", broker)
        let seen = try await Self.run(["subscribe", "r/#", "--since", "0", "-C", "1", "--format", "{offset} {epoch}", "--url", broker.url])
        #expect(seen.status == 0, "\(seen)")
        let fields = seen.stdout.trimmingCharacters(in: .newlines).split(separator: " ").map(String.init)
        #expect(fields.count == 2 && fields[0] == "\(first)", "\(seen.stdout)")
        let epoch = try #require(fields.last)
        #expect(!epoch.isEmpty)

        let second = try await Self.retain("r/a", "2", broker)
        let third = try await Self.retain("r/b", "3", broker)
        let resumed = try await Self.run([
            "subscribe", "r/#", "--since", "\(first)", "--epoch", epoch, "-C", "2", "--format", "{offset}:{text}", "--url", broker.url,
        ])
        #expect(resumed.status == 0, "\(resumed)")
        #expect(Self.lines(resumed.stdout) == ["\(second):2", "\(third):3"])

        // Another epoch: the offsets mean nothing, so the broker replays the current state
        // (the last value of each topic: r/a's 2 and r/b's 3), not "everything after `first`".
        let otherEpoch = try await Self.run([
            "subscribe", "r/#", "--since", "\(third)", "--epoch", "not-\(epoch)", "-C", "2", "--format", "{offset}", "--url", broker.url,
        ])
        #expect(otherEpoch.status == 0, "\(otherEpoch)")
        #expect(Set(Self.lines(otherEpoch.stdout)) == ["\(second)", "\(third)"])
    }

    @Test func publishAllOfStdinRepeatAndLines() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let whole = try await Self.run(["publish", "-r", "-s", "p/whole", "--url", broker.url], stdin: "line one\nline two\n")
        #expect(whole.status == 0, "\(whole)")
        #expect(Self.lines(whole.stdout).count == 1)

        let repeated = try await Self.run(["publish", "-r", "p/rep", #"{"k":1}"#, "--repeat", "3", "--interval", "0.01", "--url", broker.url])
        #expect(repeated.status == 0, "\(repeated)")
        let offsets = Self.lines(repeated.stdout)
        #expect(offsets.count == 3 && Set(offsets).count == 3, "\(repeated.stdout)")

        let lines = try await Self.run(["publish", "-r", "-l", "p/lines", "--url", broker.url], stdin: "1\n\n2\n")
        #expect(lines.status == 0, "\(lines)")
        #expect(Self.lines(lines.stdout).count == 2)

        let binary = try await Self.run(["publish", "-r", "-s", "--binary", "p/bin", "--url", broker.url], stdin: "raw\n")
        #expect(binary.status == 0, "\(binary)")

        let listed = try await Self.run(["retained", "ls", "p/#", "--format", "{topic} {data}", "--url", broker.url])
        #expect(listed.status == 0, "\(listed)")
        #expect(Self.lines(listed.stdout) == [
            #"p/whole "line one\nline two\n""#,
            #"p/rep {"k":1}"#, #"p/rep {"k":1}"#, #"p/rep {"k":1}"#,
            "p/lines 1", "p/lines 2",
            "p/bin cmF3Cg==",
        ])
        let raw = try await Self.run(["retained", "ls", "p/whole", "--raw", "--url", broker.url])
        #expect(raw.stdout == "line one\nline two\n\n")
        let limited = try await Self.run(["retained", "ls", "p/#", "--limit", "2", "--since", "1", "--format", "{offset}", "--url", broker.url])
        #expect(Self.lines(limited.stdout) == ["2", "3"], "\(limited)")
    }

    @Test func statsAndRetainedNeedTheAPIKey() async throws {
        let broker = try await BrokerProcess.start(["--auth-api-key", "k3y"])
        defer { broker.child.killNow() }
        let refused = try await Self.run(["stats", "--url", broker.url])
        #expect(refused.status == 1, "\(refused)")
        #expect(refused.stderr.contains("HTTP 401"), "\(refused.stderr)")

        let stats = try await Self.run(["stats", "--api-key", "k3y", "--url", broker.url])
        #expect(stats.status == 0, "\(stats)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any])
        #expect(object["connections"] != nil && object["journal"] != nil, "\(stats.stdout)")

        let fromEnvironment = try await Self.run(["stats", "--url", broker.url], environment: ["BROKER_API_KEY": "k3y"])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
        // The WebSocket token serves when no API key is given (the API key is a client credential too).
        let publish = try await Self.run(["publish", "-r", "k/1", "1", "--token", "k3y", "--url", broker.url])
        #expect(publish.status == 0, "\(publish)")
        let listed = try await Self.run(["retained", "ls", "k/#", "--raw", "--token", "k3y", "--url", broker.url])
        #expect(listed.status == 0 && listed.stdout == "1\n", "\(listed)")

        let unreachable = try await Self.run(["stats", "--url", "ws://127.0.0.1:\(try unusedPort())/ws"])
        #expect(unreachable.status == 3, "\(unreachable)")
    }

    @Test func anHTTPAPIThatNeverAnswersTimesOut() async throws {
        // A listener that accepts (in the kernel's backlog) and never answers.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0 && listen(fd, 8) == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        // Without a bound on the exchange after connecting, this would hang past the give-up.
        let result = try await Self.run(["stats", "--timeout", "0.3", "--url", "ws://127.0.0.1:\(port)/ws"])
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("no answer in time"), "\(result.stderr)")
    }

    @Test func contextsAreSavedSelectedAndOverridden() async throws {
        let broker = try await BrokerProcess.start(["--auth-api-key", "ctxkey"])
        defer { broker.child.killNow() }
        let config = temporaryDirectory("broker-cli-config")
        defer { removeDirectory(config) }
        let environment = ["XDG_CONFIG_HOME": config]
        let dead = "ws://127.0.0.1:\(try unusedPort())/ws"

        let save = try await Self.run(
            ["context", "save", "local", "--url", broker.url, "--token", "ctxkey", "--api-key", "ctxkey", "--select"],
            environment: environment)
        #expect(save.status == 0, "\(save)")
        let saveDead = try await Self.run(["context", "save", "dead", "--url", dead], environment: environment)
        #expect(saveDead.status == 0, "\(saveDead)")
        #expect(FileManager.default.fileExists(atPath: config + "/broker-cli/contexts/local.json"))

        let list = try await Self.run(["context", "ls"], environment: environment)
        #expect(Self.lines(list.stdout) == ["  dead  \(dead)", "* local  \(broker.url)"], "\(list)")
        let show = try await Self.run(["context", "show"], environment: environment)
        #expect(show.stdout.contains(broker.url) && !show.stdout.contains("ctxkey"), "\(show)")

        // The selected context gives the URL, the token and the API key.
        let ping = try await Self.run(["ping"], environment: environment)
        #expect(ping.status == 0, "\(ping)")
        let stats = try await Self.run(["stats"], environment: environment)
        #expect(stats.status == 0, "\(stats)")

        // BROKER_CONTEXT over the selection, --context over BROKER_CONTEXT, --url over the context.
        let viaVariable = try await Self.run(["ping"], environment: environment.merging(["BROKER_CONTEXT": "dead"]) { $1 })
        #expect(viaVariable.status == 3, "\(viaVariable)")
        let viaFlag = try await Self.run(["ping", "--context", "local"], environment: environment.merging(["BROKER_CONTEXT": "dead"]) { $1 })
        #expect(viaFlag.status == 0, "\(viaFlag)")
        let urlFlag = try await Self.run(["ping", "--context", "dead", "--url", broker.url, "--token", "ctxkey"], environment: environment)
        #expect(urlFlag.status == 0, "\(urlFlag)")
        let urlVariable = try await Self.run(["ping"], environment: environment.merging(["BROKER_URL": dead]) { $1 })
        #expect(urlVariable.status == 3, "\(urlVariable)")

        let unknown = try await Self.run(["ping", "--context", "nope"], environment: environment)
        #expect(unknown.status == 2, "\(unknown)")

        let select = try await Self.run(["context", "select", "dead"], environment: environment)
        #expect(select.status == 0, "\(select)")
        let selected = try await Self.run(["context", "select"], environment: environment)
        #expect(selected.stdout == "dead\n", "\(selected)")
        let remove = try await Self.run(["context", "rm", "dead"], environment: environment)
        #expect(remove.status == 0, "\(remove)")
        let after = try await Self.run(["context", "ls"], environment: environment)
        #expect(Self.lines(after.stdout) == ["  local  \(broker.url)"], "\(after)")
        #expect(try await broker.stop() == 0)
    }

    @Test func insecureAndClientCertificateOverTLS() async throws {
        let directory = temporaryDirectory("broker-cli-tls")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { removeDirectory(directory) }
        let certificate = directory + "/cert.pem"
        let key = directory + "/key.pem"
        let openssl = try await runCommand([
            "/usr/bin/env", "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", certificate, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        try #require(openssl.exitCode == 0, "\(openssl.output)")

        let broker = try await BrokerProcess.start(["--tls-certificate", certificate, "--tls-key", key])
        defer { broker.child.killNow() }
        // localhost, not 127.0.0.1: WSClient sends the URL's host as SNI, and NIOSSL refuses an IP there.
        let url = "wss://localhost:\(broker.port)/ws"

        // Self-signed: refused unless trusted (--ca-file) or not verified (--insecure, with a warning).
        let verified = try await Self.run(["ping", "--url", url])
        #expect(verified.status == 3, "\(verified)")
        let insecure = try await Self.run(["ping", "--insecure", "--url", url])
        #expect(insecure.status == 0, "\(insecure)")
        #expect(insecure.stderr.contains("warning: --insecure"), "\(insecure.stderr)")
        let trusted = try await Self.run(["ping", "--ca-file", certificate, "--url", url])
        #expect(trusted.status == 0 && trusted.stderr.isEmpty, "\(trusted)")
        let stats = try await Self.run(["stats", "--insecure", "--url", url])
        #expect(stats.status == 0 && stats.stdout.contains("\"journal\""), "\(stats)")

        // A client certificate is presented (this broker does not ask for one); a key that is not
        // a key makes the TLS setup fail, which shows the files are used.
        let withCertificate = try await Self.run(["ping", "--ca-file", certificate, "--cert", certificate, "--key", key, "--url", url])
        #expect(withCertificate.status == 0, "\(withCertificate)")
        let badKey = try await Self.run(["ping", "--ca-file", certificate, "--cert", certificate, "--key", certificate, "--url", url])
        #expect(badKey.status != 0, "\(badKey)")
        #expect(try await broker.stop() == 0)
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScripts(_ shell: String) async throws {
        let result = try await Self.run(["--generate-completion-script", shell])
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("broker-cli") && result.stdout.contains("subscribe") && result.stdout.contains("context"))
    }

    @Test func newUsageErrorsExitTwo() async throws {
        let url = "ws://127.0.0.1:\(try unusedPort())/ws"
        let cases: [[String]] = [
            ["subscribe", "--url", url],
            ["subscribe", "t", "--epoch", "e", "--url", url],
            ["subscribe", "t", "-C", "0", "--url", url],
            ["subscribe", "t", "-W", "0", "--url", url],
            ["subscribe", "t", "--raw", "--format", "{topic}", "--url", url],
            ["subscribe", "t", "--format", "{nope}", "--url", url],
            ["subscribe", "t", "ok/#", "a/#/b", "--url", url],
            ["publish", "t", "1", "-s", "--url", url],
            ["publish", "t", "-l", "--repeat", "2", "--url", url],
            ["publish", "t", "1", "--repeat", "0", "--url", url],
            ["publish", "t", "1", "--cert", "/etc/hostname", "--url", url],
            ["publish", "t", "1", "--ca-file", "/nonexistent.pem", "--url", url],
            ["ping", "--context", "../x", "--url", url],
            ["retained", "ls", "a/#/b", "--url", url],
            ["retained", "ls", "a/#", "--limit", "0", "--url", url],
            ["context", "save", "bad/name"],
        ]
        try await withThrowingTaskGroup(of: ([String], Int32, String).self) { group in
            for arguments in cases {
                group.addTask {
                    let result = try await Self.run(arguments, environment: ["XDG_CONFIG_HOME": "/nonexistent-config"])
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
