import BrokerProtocol
import BrokerTestSupport
import Foundation
import Testing

@testable import BrokerServer

/// The `broker` executable's side of access control: an open broker refuses a public address
/// (exit 78) unless anonymous access is asked for, and `broker token create/verify`.
@Suite(.spawnsChildProcesses) struct ProcessAuthTests {
    @Test func openBrokerOnAPublicAddressRefusesToStartWith78() async throws {
        let data = temporaryDirectory("broker-open")
        defer { removeDirectory(data) }
        let refused = try ChildProcess("broker", ["--host", "0.0.0.0", "--port", "0", "--data-dir", data])
        #expect(try await refused.waitForExit(timeout: .seconds(15)) == 78)
        #expect(refused.stderr.contains("configuration error"), "\(refused.stderr)")
        #expect(refused.stderr.contains("auth.allow-anonymous"))

        let open = try ChildProcess(
            "broker", ["--host", "0.0.0.0", "--port", "0", "--data-dir", data], environment: ["BROKER_AUTH_ALLOW_ANONYMOUS": "true"])
        _ = try await open.listeningPort()
        open.interrupt()
        #expect(try await open.waitForExit(timeout: .seconds(10)) == 0)

        let secured = try ChildProcess(
            "broker", ["--host", "0.0.0.0", "--port", "0", "--data-dir", data], environment: ["BROKER_AUTH_JWT_SECRET": AuthenticatorTests.secret])
        _ = try await secured.listeningPort()
        secured.interrupt()
        #expect(try await secured.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test func tokenCreateSignsWhatTheBrokerAcceptsAndVerifyReadsIt() async throws {
        let environment = ["BROKER_AUTH_JWT_SECRET": AuthenticatorTests.secret]
        let startedAt = Int64(Date().timeIntervalSince1970)
        let create = try ChildProcess(
            "broker", ["token", "create", "--sub", "alice", "--subscribe", "dash/#", "--publish", "cmd/alice", "--ttl", "1h"],
            environment: environment)
        #expect(try await create.waitForExit(timeout: .seconds(10)) == 0)
        let exitedBy = Int64(Date().timeIntervalSince1970) + 1
        let token = create.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.split(separator: ".").count == 3, "\(create.stdout) \(create.stderr)")

        var configuration = BrokerConfiguration()
        configuration.jwtSecret = AuthenticatorTests.secret
        guard case .success(let identity) = try await Authenticator.make(configuration).authenticate(credential: token) else {
            Issue.record("the broker refuses what `broker token create` made")
            return
        }
        #expect(identity.client == "alice")
        #expect(identity.permissions.maySubscribe(to: "dash/+/cpu") && identity.permissions.mayPublish(to: "cmd/alice"))
        let exp = try #require(identity.expiresAt)
        // An hour from when the command ran, whenever this test gets to look (under a sanitizer
        // on a loaded machine that was three minutes later once).
        #expect((startedAt + 3600...exitedBy + 3600).contains(exp), "exp \(exp), ran in [\(startedAt), \(exitedBy)]")

        let verify = try ChildProcess("broker", ["token", "verify", token], environment: environment)
        #expect(try await verify.waitForExit(timeout: .seconds(10)) == 0)
        #expect(verify.stdout.contains("valid now"), "\(verify.stdout)")
        #expect(verify.stdout.contains(#""sub":"alice""#))

        let otherKey = try ChildProcess(
            "broker", ["token", "verify", token], environment: ["BROKER_AUTH_JWT_SECRET": "another-secret-of-at-least-32-bytes"])
        #expect(try await otherKey.waitForExit(timeout: .seconds(10)) != 0)
        #expect(otherKey.stdout.contains("invalid: bad token signature"), "\(otherKey.stdout)")
    }
}
