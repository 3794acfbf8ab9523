import BrokerClient
import BrokerServer
import BrokerTestSupport
import Foundation
import NIOConcurrencyHelpers
import Testing

/// `BrokerClient` against a broker that requires JWTs: a token provider is asked on connect and
/// before each `exp`, and the connection survives its tokens' expiry by refreshing.
@Suite struct TokenProviderTests {
    static let secret = "client-test-secret-of-at-least-32-bytes"

    /// Tokens for alice that expire `lifetime` seconds after they are made; counts the calls.
    final class Issuer: Sendable {
        let calls = NIOLockedValueBox(0)
        let lifetime: Int64
        init(lifetime: Int64) { self.lifetime = lifetime }

        func token() async throws -> String {
            calls.withLockedValue { $0 += 1 }
            let now = Int64(Date().timeIntervalSince1970)
            return try await Authenticator.sign(
                TokenClaims(sub: "alice", exp: now + lifetime, publish: ["cmd/alice"], subscribe: ["cmd/#"]),
                secret: TokenProviderTests.secret, privateKeyPath: nil)
        }
    }

    @Test func providerIsAskedOnConnectAndTheStaticTokenIsSentOtherwise() async throws {
        try await TestBroker.with(configure: { $0.jwtSecret = Self.secret }) { broker in
            let issuer = Issuer(lifetime: 3600)
            var configuration = testClientConfiguration()
            configuration.tokenProvider = { try await issuer.token() }
            let client = BrokerClient(url: broker.url, configuration: configuration, logger: quietLogger("test-client"))
            let welcome = try await client.connect()
            #expect(welcome.client == "alice")
            #expect(issuer.calls.withLockedValue { $0 } == 1)
            _ = try await client.publish("cmd/alice", rawJSON: "1")
            await #expect(throws: BrokerClientError.self) { _ = try await client.publish("cmd/bob", rawJSON: "1") }
            await client.close()

            var plain = testClientConfiguration()
            plain.token = try await issuer.token()
            let second = BrokerClient(url: broker.url, configuration: plain, logger: quietLogger("test-client"))
            #expect(try await second.connect().client == "alice")
            await second.close()
        }
    }

    @Test func shortLivedTokensAreRefreshedOnTheOpenConnection() async throws {
        try await TestBroker.with(configure: { $0.jwtSecret = Self.secret }) { broker in
            // Tokens live 120 s and are refreshed 118 s before their exp: every ~2 s, each refresh
            // with two minutes to get through a loaded machine (8 s tokens were not enough at load
            // 15). Without refresh the broker would close the connection at the first exp
            // (token_expired) and the client would reconnect.
            let issuer = Issuer(lifetime: 120)
            let events = EventLog()
            var configuration = testClientConfiguration()
            configuration.tokenProvider = { try await issuer.token() }
            configuration.tokenRefreshMargin = .seconds(118)
            configuration.onEvent = { events.append($0) }
            let client = BrokerClient(url: broker.url, configuration: configuration, logger: quietLogger("test-client"))
            try await client.connect()
            try await eventually("two refreshes", timeout: .seconds(60)) { issuer.calls.withLockedValue { $0 } >= 3 }
            try await client.ping()
            #expect(events.connectedCount == 1)
            #expect(events.disconnectedCount == 0)
            await client.close()
        }
    }
}
