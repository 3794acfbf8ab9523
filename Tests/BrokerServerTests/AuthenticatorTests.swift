import Foundation
import JWTKit
import NIOHTTP1
import Testing

@testable import BrokerServer

/// Who may connect and with what permissions (PROTOCOL.md "Who may connect", "What a token
/// permits"), decided by the Authenticator alone: no sockets, the time given explicitly.
@Suite struct AuthenticatorTests {
    static let secret = "test-secret-of-at-least-32-bytes!!"
    static let now = Date(timeIntervalSince1970: 1_800_000_000)
    static var seconds: Int64 { Int64(now.timeIntervalSince1970) }

    static func authenticator(_ configure: (inout BrokerConfiguration) -> Void = { _ in }) async throws -> Authenticator {
        var configuration = BrokerConfiguration()
        configure(&configuration)
        return try await Authenticator.make(configuration)
    }

    static func hs256(_ claims: TokenClaims, secret: String = secret) async throws -> String {
        try await Authenticator.sign(claims, secret: secret, privateKeyPath: nil)
    }

    /// A token with any header and payload JSON, signed with HS256 over exactly those bytes.
    static func handmade(header: String, payload: String, secret: String = secret) async throws -> String {
        func base64URL(_ bytes: some Sequence<UInt8>) -> String {
            Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
        }
        let input = base64URL(Array(header.utf8)) + "." + base64URL(Array(payload.utf8))
        let algorithm = try await Authenticator.makeAlgorithm(secret: secret, publicKeyPath: nil, privateKeyPath: nil)!
        return input + "." + base64URL(try algorithm.sign(Array(input.utf8)))
    }

    func refusal(_ result: Result<Identity, AuthRefusal>) -> String? {
        if case .failure(let refusal) = result { return refusal.reason }
        return nil
    }

    func identity(_ result: Result<Identity, AuthRefusal>) -> Identity? {
        if case .success(let identity) = result { return identity }
        return nil
    }

    // MARK: Credentials

    @Test func credentialComesFromTheBearerHeaderOrTheQuery() {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws?token=from-query")
        #expect(Authenticator.credential(of: head) == "from-query")
        head.headers.add(name: "Authorization", value: "Bearer from-header")
        #expect(Authenticator.credential(of: head) == "from-header")
        #expect(Authenticator.credential(of: HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws")) == nil)
    }

    @Test func openBrokerAdmitsEveryoneWithEverything() async throws {
        let authenticator = try await Self.authenticator()
        #expect(!authenticator.hasCredentials)
        #expect(identity(authenticator.authenticate(credential: nil)) == .open)
        #expect(identity(authenticator.authenticate(credential: "whatever"))?.permissions == .everything)
    }

    @Test func configuredAuthRefusesAnonymousUnlessTheAnonymousListsSayOtherwise() async throws {
        let closed = try await Self.authenticator { $0.jwtSecret = Self.secret }
        #expect(refusal(closed.authenticate(credential: nil)) != nil)
        let apiKeyOnly = try await Self.authenticator { $0.apiKey = "key" }
        #expect(refusal(apiKeyOnly.authenticate(credential: nil)) != nil)

        let dashboards = try await Self.authenticator { $0.jwtSecret = Self.secret; $0.anonymousSubscribe = ["public/#"] }
        let anonymous = try #require(identity(dashboards.authenticate(credential: nil)))
        #expect(anonymous.kind == .anonymous)
        #expect(anonymous.permissions.maySubscribe(to: "public/+/x"))
        #expect(!anonymous.permissions.maySubscribe(to: "#"))
        #expect(!anonymous.permissions.mayPublish(to: "public/x"))

        // allow-anonymous is about listening open on a public address, not about opening a
        // broker that has credentials.
        let allowed = try await Self.authenticator { $0.jwtSecret = Self.secret; $0.allowAnonymous = true }
        #expect(refusal(allowed.authenticate(credential: nil)) != nil)
        let openAllowed = try await Self.authenticator { $0.allowAnonymous = true; $0.host = "0.0.0.0" }
        #expect(identity(openAllowed.authenticate(credential: nil))?.permissions == .everything)
    }

    @Test func staticTokensAndTheAPIKeyGiveFullPermissions() async throws {
        let authenticator = try await Self.authenticator { $0.clientTokens = ["t1"]; $0.apiKey = "key"; $0.jwtSecret = Self.secret }
        for token in ["t1", "key"] {
            let admitted = identity(authenticator.authenticate(credential: token))
            #expect(admitted?.kind == .staticToken && admitted?.permissions == .everything)
        }
        #expect(refusal(authenticator.authenticate(credential: "t2")) != nil)
        let tokensOnly = try await Self.authenticator { $0.clientTokens = ["t1"] }
        #expect(refusal(tokensOnly.authenticate(credential: "t2")) == "unknown token")
    }

    // MARK: JWT

    @Test func validHS256TokenCarriesSubExpAndPermissions() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        #expect(authenticator.algorithmName == "HS256")
        let token = try await Self.hs256(TokenClaims(
            sub: "alice", exp: Self.seconds + 60, publish: ["cmd/{sub}"], subscribe: ["dash/#", "users/{sub}/#"]))
        let admitted = try #require(identity(authenticator.authenticate(credential: token, now: Self.now)))
        #expect(admitted.kind == .jwt)
        #expect(admitted.client == "alice")
        #expect(admitted.expiresAt == Self.seconds + 60)
        #expect(admitted.permissions.mayPublish(to: "cmd/alice"))
        #expect(!admitted.permissions.mayPublish(to: "cmd/bob"))
        #expect(admitted.permissions.maySubscribe(to: "users/alice/+"))
        #expect(!admitted.permissions.maySubscribe(to: "users/bob/x"))
        #expect(admitted.permissions.maySubscribe(to: "dash/+/cpu"))
    }

    @Test func tokenWithoutPermissionClaimsMayDoNothing() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        let token = try await Self.hs256(TokenClaims(sub: "x"))
        let admitted = try #require(identity(authenticator.authenticate(credential: token, now: Self.now)))
        #expect(!admitted.permissions.mayPublish(to: "a") && !admitted.permissions.maySubscribe(to: "a"))
        #expect(admitted.expiresAt == nil)
    }

    @Test func wrongSignatureIsRefused() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        let forged = try await Self.hs256(TokenClaims(sub: "alice"), secret: "another-secret-of-at-least-32-bytes")
        #expect(refusal(authenticator.authenticate(credential: forged, now: Self.now)) == "bad token signature")
        #expect(refusal(authenticator.authenticate(credential: "not.a.jwt", now: Self.now)) == "malformed token")
        #expect(refusal(authenticator.authenticate(credential: "garbage", now: Self.now)) == "malformed token")
    }

    @Test func onlyTheConfiguredAlgorithmIsAccepted() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        // alg none, with and without a signature.
        let payload = ##"{"sub":"alice","subscribe":["#"]}"##
        let none = try await Self.handmade(header: #"{"alg":"none","typ":"JWT"}"#, payload: payload)
        #expect(refusal(authenticator.authenticate(credential: none, now: Self.now))?.contains("none") == true)
        let unsigned = none.split(separator: ".").prefix(2).joined(separator: ".") + "."
        #expect(refusal(authenticator.authenticate(credential: unsigned, now: Self.now)) != nil)
        // A valid HMAC over the bytes, but the header claims another algorithm.
        let hs384 = try await Self.handmade(header: #"{"alg":"HS384","typ":"JWT"}"#, payload: payload)
        #expect(refusal(authenticator.authenticate(credential: hs384, now: Self.now))?.contains("HS384") == true)
        // An algorithm name that is not one is not echoed (it goes into the 401 and the log).
        let odd = try await Self.handmade(header: #"{"alg":"HS256\n<script>","typ":"JWT"}"#, payload: payload)
        #expect(refusal(authenticator.authenticate(credential: odd, now: Self.now)) == "token algorithm ? is not accepted (HS256 only)")
        // The same bytes with the right alg pass, so the refusals above are the alg's.
        let hs256 = try await Self.handmade(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload)
        #expect(identity(authenticator.authenticate(credential: hs256, now: Self.now)) != nil)

        // RS256 configured: an HS256 token signed with the public key's PEM text (the classic
        // algorithm confusion) is refused.
        let publicKey = try TestKeys.file(TestKeys.rsaPublic)
        let rsa = try await Self.authenticator { $0.jwtPublicKeyPath = publicKey }
        #expect(rsa.algorithmName == "RS256")
        let confused = try await Self.handmade(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: payload, secret: TestKeys.rsaPublic)
        #expect(refusal(rsa.authenticate(credential: confused, now: Self.now)) != nil)
    }

    @Test func rs256AndES256VerifyWithThePublicKeyFile() async throws {
        for (privatePEM, publicPEM, name) in [
            (TestKeys.rsaPrivate, TestKeys.rsaPublic, "RS256"), (TestKeys.ecPrivate, TestKeys.ecPublic, "ES256"),
        ] {
            let authenticator = try await Self.authenticator { $0.jwtPublicKeyPath = try? TestKeys.file(publicPEM) }
            #expect(authenticator.algorithmName == name)
            let token = try await Authenticator.sign(
                TokenClaims(sub: "svc", publish: ["metrics/#"]), secret: nil, privateKeyPath: try TestKeys.file(privatePEM))
            let admitted = identity(authenticator.authenticate(credential: token, now: Self.now))
            #expect(admitted?.client == "svc", "\(name)")
            #expect(admitted?.permissions.mayPublish(to: "metrics/cpu") == true, "\(name)")
            // HS256 with some secret is refused by a public-key broker.
            let hs = try await Self.hs256(TokenClaims(sub: "svc"))
            #expect(refusal(authenticator.authenticate(credential: hs, now: Self.now)) != nil, "\(name)")
        }
    }

    @Test func expiryAndNotBeforeAreEnforcedWithLeewayOnlyForNotBefore() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        func check(_ claims: TokenClaims) async throws -> String? {
            refusal(authenticator.authenticate(credential: try await Self.hs256(claims), now: Self.now))
        }
        #expect(try await check(TokenClaims(exp: Self.seconds - 1)) == "token expired")
        #expect(try await check(TokenClaims(exp: Self.seconds)) == "token expired")
        #expect(try await check(TokenClaims(exp: Self.seconds + 1)) == nil)
        #expect(try await check(TokenClaims(nbf: Self.seconds + Authenticator.notBeforeLeeway)) == nil)
        #expect(try await check(TokenClaims(nbf: Self.seconds + Authenticator.notBeforeLeeway + 1)) == "token not yet valid")
    }

    @Test func audienceAndIssuerMustMatchWhenConfigured() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret; $0.jwtAudience = "broker"; $0.jwtIssuer = "auth.example" }
        func check(_ claims: TokenClaims) async throws -> String? {
            refusal(authenticator.authenticate(credential: try await Self.hs256(claims), now: Self.now))
        }
        #expect(try await check(TokenClaims(iss: "auth.example", aud: ["broker"])) == nil)
        #expect(try await check(TokenClaims(iss: "auth.example", aud: ["other", "broker"])) == nil)
        #expect(try await check(TokenClaims(iss: "auth.example", aud: ["other"])) == "token audience is not accepted")
        #expect(try await check(TokenClaims(iss: "auth.example")) == "token audience is not accepted")
        #expect(try await check(TokenClaims(iss: "evil", aud: ["broker"])) == "token issuer is not accepted")
        #expect(try await check(TokenClaims(aud: ["broker"])) == "token issuer is not accepted")
    }

    @Test func subUsedInAFilterMustBeOneLevel() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        for sub in ["", "a/b", "a+", "#", "a\u{0}b"] {
            let token = try await Self.hs256(TokenClaims(sub: sub, subscribe: ["users/{sub}/#"]))
            #expect(refusal(authenticator.authenticate(credential: token, now: Self.now))?.contains("sub") == true, "sub \(sub.debugDescription)")
        }
        // Not used by a filter: any sub will do.
        let token = try await Self.hs256(TokenClaims(sub: "a/b", subscribe: ["dash/#"]))
        #expect(identity(authenticator.authenticate(credential: token, now: Self.now))?.client == "a/b")
        // An invalid filter in a claim refuses the token.
        let invalid = try await Self.hs256(TokenClaims(sub: "x", publish: ["a/#/b"]))
        #expect(refusal(authenticator.authenticate(credential: invalid, now: Self.now)) != nil)
    }

    @Test func unusablePublicKeyFileFailsAtStart() async throws {
        let path = try TestKeys.file("not a key")
        await #expect(throws: (any Error).self) { _ = try await Self.authenticator { $0.jwtPublicKeyPath = path } }
    }

    @Test func shortSecretsSignAndVerifyAsRFC2104Says() async throws {
        // HMAC pads short keys with zeros; the padding done to please jwt-kit changes nothing:
        // a token made with Python's hmac module and the plain secret "short" verifies.
        let authenticator = try await Self.authenticator { $0.jwtSecret = "short" }
        let python = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJweXRob24iLCJzdWJzY3JpYmUiOlsiZGFzaC8jIl19.n4pRawXIWwcvXx_kuTjH5o-_tfcAQXffg1uJ4r0VeJM"
        #expect(identity(authenticator.authenticate(credential: python, now: Self.now))?.client == "python")
        let token = try await Self.hs256(TokenClaims(sub: "a"), secret: "short")
        #expect(identity(authenticator.authenticate(credential: token, now: Self.now))?.client == "a")
    }

    /// `"admin": true` (an extension of the claims) makes an operator's token; anything else not.
    @Test func theAdminClaimMarksOperatorTokens() async throws {
        let authenticator = try await Self.authenticator { $0.jwtSecret = Self.secret }
        let admin = try await Self.hs256(TokenClaims(sub: "ops", admin: true))
        #expect(try authenticator.authenticate(credential: admin, now: Self.now).get().isAdmin)
        let plain = try await Self.hs256(TokenClaims(sub: "ops"))
        #expect(try !authenticator.authenticate(credential: plain, now: Self.now).get().isAdmin)
        let notTrue = try await Self.handmade(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: #"{"sub":"ops","admin":false}"#)
        #expect(try !authenticator.authenticate(credential: notTrue, now: Self.now).get().isAdmin)
        let mistyped = try await Self.handmade(header: #"{"alg":"HS256","typ":"JWT"}"#, payload: #"{"sub":"ops","admin":"yes"}"#)
        #expect(throws: (any Error).self) { try authenticator.authenticate(credential: mistyped, now: Self.now).get() }
    }
}
