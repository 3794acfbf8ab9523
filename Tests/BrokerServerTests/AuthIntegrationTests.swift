import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import Testing

@testable import BrokerServer

/// The real broker configured with a JWT secret, over real sockets: who gets in (101, 401, 403,
/// 421), what a token permits, the HTTP API with tokens, CORS and CSRF.
@Suite struct AuthIntegrationTests {
    static let secret = AuthenticatorTests.secret

    static func token(_ claims: TokenClaims, secret: String = secret) async throws -> String {
        try await Authenticator.sign(claims, secret: secret, privateKeyPath: nil)
    }

    static var now: Int64 { Int64(Date().timeIntervalSince1970) }

    static func withBroker(
        _ configure: @escaping (inout BrokerConfiguration) -> Void = { _ in }, _ body: (TestBroker) async throws -> Void
    ) async throws {
        try await TestBroker.with(configure: { $0.jwtSecret = secret; configure(&$0) }, body)
    }

    /// Upgrade attempt that must be refused; returns the status line and the whole head.
    static func refused(_ broker: TestBroker, path: String = "/ws", headers: [String] = []) async throws -> String {
        let client = try await RawWebSocketClient.connect(port: broker.port, path: path, extraHeaders: headers, expectUpgrade: false)
        let response = client.handshakeResponse
        await client.close()
        return response
    }

    @Test func validTokenUpgradesByHeaderOrQueryAndWelcomeNamesTheClient() async throws {
        try await Self.withBroker { broker in
            let exp = Self.now + 600
            let token = try await Self.token(TokenClaims(sub: "alice", exp: exp, subscribe: ["dash/#"]))
            for client in [
                try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer \(token)"]),
                try await RawWebSocketClient.connect(port: broker.port, path: "/ws?token=\(token)"),
            ] {
                guard case .welcome(let welcome) = try await client.nextMessage() else {
                    Issue.record("no welcome")
                    continue
                }
                #expect(welcome.client == "alice")
                #expect(welcome.exp == exp)
                await client.close()
            }
        }
    }

    @Test func badCredentialsAreRefusedWith401BeforeTheUpgrade() async throws {
        try await Self.withBroker { broker in
            let expired = try await Self.token(TokenClaims(sub: "a", exp: Self.now - 60))
            let forged = try await Self.token(TokenClaims(sub: "a"), secret: "some-other-secret-of-32-bytes-or-more")
            let wrongAlg = try await AuthenticatorTests.handmade(header: #"{"alg":"HS384","typ":"JWT"}"#, payload: #"{"sub":"a"}"#)
            let none = try await AuthenticatorTests.handmade(header: #"{"alg":"none"}"#, payload: #"{"sub":"a"}"#)
            let cases: [(String, [String], String)] = [
                ("no credentials", [], "credentials required"),
                ("expired", ["Authorization: Bearer \(expired)"], "token expired"),
                ("forged", ["Authorization: Bearer \(forged)"], "bad token signature"),
                ("HS384", ["Authorization: Bearer \(wrongAlg)"], "HS384"),
                ("none", ["Authorization: Bearer \(none)"], "none"),
                ("garbage", ["Authorization: Bearer garbage"], "malformed token"),
            ]
            for (name, headers, _) in cases {
                let response = try await Self.refused(broker, headers: headers)
                #expect(response.hasPrefix("HTTP/1.1 401"), "\(name): \(response)")
                #expect(response.lowercased().contains("www-authenticate: bearer"), "\(name)")
            }
            // The plain-text reason, read over HTTP (the raw client stops at the head).
            for (name, headers, reason) in cases {
                let response = try await HTTPTestClient.request(
                    "GET", "/ws", port: broker.port,
                    headers: ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"] + headers)
                #expect(response.status == 401, "\(name)")
                #expect(response.body.contains(reason), "\(name): \(response.body)")
            }
        }
    }

    @Test func permissionsHoldOverRealSockets() async throws {
        try await Self.withBroker { broker in
            let alice = try await Self.token(TokenClaims(sub: "alice", publish: ["cmd/{sub}"], subscribe: ["cmd/#"]))
            let client = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer \(alice)"])
            _ = try await client.nextMessage()
            try await client.sendText(##"{"op":"subscribe","topic":"#","id":1}"##)
            guard case .error(let code, _, let id) = try await client.nextMessage() else { throw TestFailure("no error") }
            #expect(code == "forbidden" && id?.json == "1")
            try await client.sendText(#"{"op":"subscribe","topic":"cmd/+","id":2,"history":0}"#)
            guard case .subscribed = try await client.nextMessage() else { throw TestFailure("not subscribed") }
            try await client.sendText(#"{"op":"publish","topic":"cmd/bob","data":1,"id":3}"#)
            guard case .error(let code3, _, let id3) = try await client.nextMessage() else { throw TestFailure("no error") }
            #expect(code3 == "forbidden" && id3?.json == "3")
            try await client.sendBinaryPublish(topic: "cmd/bob", payload: [1], ackID: 4)
            guard case .error(let code4, _, let id4) = try await client.nextMessage() else { throw TestFailure("no error") }
            #expect(code4 == "forbidden" && id4?.json == "4")
            try await client.sendText(#"{"op":"publish","topic":"cmd/alice","data":1,"id":5}"#)
            var sawAck = false
            var sawMessage = false
            for _ in 0..<2 {
                switch try await client.nextMessage() {
                case .ack(let id, _): sawAck = id.json == "5"
                case .message(let delivery): sawMessage = delivery.topic == "cmd/alice"
                default: break
                }
            }
            #expect(sawAck && sawMessage)
            await client.close()
        }
    }

    @Test func anonymousClientsGetTheAnonymousPermissions() async throws {
        try await Self.withBroker({ $0.anonymousSubscribe = ["public/#"] }) { broker in
            let client = try await broker.client()
            try await client.sendText(#"{"op":"subscribe","topic":"public/news","id":1,"history":0}"#)
            guard case .subscribed = try await client.nextMessage() else { throw TestFailure("not subscribed") }
            try await client.sendText(#"{"op":"subscribe","topic":"private/x","id":2}"#)
            guard case .error(let code, _, _) = try await client.nextMessage() else { throw TestFailure("no error") }
            #expect(code == "forbidden")
            try await client.sendText(#"{"op":"publish","topic":"public/news","data":1,"id":3}"#)
            guard case .error(let publishCode, _, _) = try await client.nextMessage() else { throw TestFailure("no error") }
            #expect(publishCode == "forbidden")
            await client.close()
        }
    }

    // MARK: Origins and Host

    @Test func foreignOriginsAre403AndTheSameOriginPasses() async throws {
        try await TestBroker.with { broker in
            let foreign = try await Self.refused(broker, headers: ["Origin: http://evil.example"])
            #expect(foreign.hasPrefix("HTTP/1.1 403"), "\(foreign)")
            let same = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Origin: http://127.0.0.1:\(broker.port)"])
            await same.close()
            let none = try await broker.client()  // no Origin: not a browser, not checked
            await none.close()
            // What WebSocket libraries send (the target, without its port): not a page's origin.
            let library = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Origin: ws://127.0.0.1"])
            await library.close()
            let sandboxed = try await Self.refused(broker, headers: ["Origin: null"])
            #expect(sandboxed.hasPrefix("HTTP/1.1 403"))
        }
        try await TestBroker.with(configure: { $0.allowedOrigins = ["https://dash.example"] }) { broker in
            let listed = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Origin: https://dash.example"])
            await listed.close()
            let other = try await Self.refused(broker, headers: ["Origin: https://dash.example.evil"])
            #expect(other.hasPrefix("HTTP/1.1 403"))
        }
        try await TestBroker.with(configure: { $0.allowedOrigins = ["*"] }) { broker in
            let any = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Origin: http://anything.example"])
            await any.close()
        }
    }

    @Test func loopbackListenerRefusesForeignHostNames() async throws {
        try await TestBroker.with(configure: { $0.allowedHosts = ["broker.internal"] }) { broker in
            for host in ["evil.example", "evil.example:\(broker.port)", "10.0.0.1"] {
                let stats = try await HTTPTestClient.request("GET", "/api/stats", port: broker.port, host: host)
                #expect(stats.status == 421, "\(host)")
                let upgrade = try await HTTPTestClient.request(
                    "GET", "/ws", port: broker.port,
                    headers: ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"],
                    host: host)
                #expect(upgrade.status == 421, "\(host)")
            }
            for host in ["localhost", "localhost:\(broker.port)", "127.0.0.1", "[::1]:\(broker.port)", "broker.internal"] {
                #expect(try await HTTPTestClient.request("GET", "/api/stats", port: broker.port, host: host).status == 200, "\(host)")
            }
        }
    }

    // MARK: HTTP API

    @Test func httpAPIAcceptsTokensWithinTheirPermissions() async throws {
        try await Self.withBroker({ $0.apiKey = "key" }) { broker in
            let token = try await Self.token(TokenClaims(sub: "svc", publish: ["cmd/#"], subscribe: ["cmd/#"]))
            let bearer = ["Authorization: Bearer \(token)", "Content-Type: application/json"]
            func status(_ method: String, _ target: String, _ headers: [String], body: String? = nil) async throws -> Int {
                try await HTTPTestClient.request(method, target, port: broker.port, headers: headers, body: body.map { Array($0.utf8) }).status
            }
            #expect(try await status("POST", "/api/publish?topic=cmd/a&retain=true", bearer, body: "1") == 200)
            #expect(try await status("POST", "/api/publish?topic=other/a", bearer, body: "1") == 403)
            #expect(try await status("POST", "/api/publish", bearer, body: #"[{"topic":"cmd/b","data":1},{"topic":"x","data":2}]"#) == 403)
            #expect(try await status("GET", "/api/retained?topic=cmd/%23", bearer) == 200)
            #expect(try await status("GET", "/api/retained?topic=%23", bearer) == 403)
            #expect(try await status("DELETE", "/api/retained?topic=other/%23", bearer) == 403)
            #expect(try await status("DELETE", "/api/retained?topic=cmd/a", bearer) == 200)
            #expect(try await status("GET", "/api/stats", bearer) == 401)  // the API key's alone
            #expect(try await status("POST", "/api/publish?topic=cmd/a", ["Content-Type: application/json"], body: "1") == 401)
            #expect(try await status("POST", "/api/publish?topic=other/a", ["X-API-Key: key", "Content-Type: application/json"], body: "1") == 200)
        }
    }

    @Test func corsAnswersAllowedOriginsOnly() async throws {
        try await TestBroker.with(configure: { $0.allowedOrigins = ["https://dash.example"] }) { broker in
            let preflight = try await HTTPTestClient.request(
                "OPTIONS", "/api/publish?topic=a", port: broker.port,
                headers: ["Origin: https://dash.example", "Access-Control-Request-Method: POST"])
            #expect(preflight.status == 204)
            #expect(preflight.headers["access-control-allow-origin"] == "https://dash.example")
            #expect(preflight.headers["access-control-allow-methods"]?.contains("POST") == true)
            #expect(preflight.headers["access-control-allow-headers"] == "authorization, content-type, x-api-key")
            let stats = try await HTTPTestClient.request("GET", "/api/stats", port: broker.port, headers: ["Origin: https://dash.example"])
            #expect(stats.status == 200 && stats.headers["access-control-allow-origin"] == "https://dash.example")

            let foreign = try await HTTPTestClient.request(
                "OPTIONS", "/api/publish?topic=a", port: broker.port, headers: ["Origin: https://evil.example"])
            #expect(foreign.status == 403 && foreign.headers["access-control-allow-origin"] == nil)
            let plain = try await HTTPTestClient.request("GET", "/api/stats", port: broker.port)
            #expect(plain.headers["access-control-allow-origin"] == nil)
        }
    }

    @Test func crossOriginTextPlainPublishStoresNothing() async throws {
        try await TestBroker.with { broker in
            let forged = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=csrf/x&retain=true", port: broker.port,
                headers: ["Origin: http://evil.example", "Content-Type: text/plain"], body: Array("pwned".utf8))
            #expect(forged.status == 403)
            let listed = try await HTTPTestClient.request("GET", "/api/retained?topic=csrf/%23", port: broker.port)
            #expect(listed.status == 200)
            #expect((listed.json?["messages"] as? [Any])?.isEmpty == true, "\(listed.body)")
        }
    }
}
