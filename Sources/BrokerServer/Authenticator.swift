import BrokerProtocol
import Foundation
import JWTKit
import NIOHTTP1

/// Who a client is and what it may do, decided once when it connects (or refreshes).
public struct Identity: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// No credentials: the anonymous permissions (everything on an open broker).
        case anonymous
        /// A static client token or the API key: full permissions.
        case staticToken
        /// A verified JWT.
        case jwt
    }

    public var kind: Kind
    /// The token's `sub`, when it has one.
    public var client: String?
    /// The token's `exp` (Unix seconds), when it expires.
    public var expiresAt: Int64?
    public var permissions: Permissions
    /// A JWT with `"admin": true`: may use the operator routes (`/api/stats`, `/api/connections`,
    /// `/api/topics`, `/metrics`) as the API key does.
    public var isAdmin: Bool

    public init(kind: Kind, client: String? = nil, expiresAt: Int64? = nil, permissions: Permissions, isAdmin: Bool = false) {
        self.kind = kind
        self.client = client
        self.expiresAt = expiresAt
        self.permissions = permissions
        self.isAdmin = isAdmin
    }

    /// The identity of every client of an open broker.
    public static let open = Identity(kind: .anonymous, permissions: .everything)
}

/// An `Identity` by reference, so that a connection holds a pointer to it; the clients of an open
/// broker all share `open`.
final class IdentityBox: Sendable {
    let identity: Identity

    init(_ identity: Identity) { self.identity = identity }

    static let open = IdentityBox(.open)

    /// A box for `identity`: a shared one when it is the open broker's or `authenticator`'s
    /// anonymous identity, a new one for a token's.
    static func shared(for identity: Identity, authenticator: Authenticator?) -> IdentityBox {
        if identity == open.identity { return open }
        if let anonymous = authenticator?.anonymousIdentity, anonymous.identity == identity { return anonymous }
        return IdentityBox(identity)
    }
}

/// Why credentials were refused: answered with 401 (`WWW-Authenticate: Bearer`) before an
/// upgrade, with `error` `unauthorized` to a `refresh`.
public struct AuthRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The claims of a broker token (PROTOCOL.md "What a token permits"): the registered ones the
/// broker checks and the two permission lists. Used to verify and, by `broker token create` and
/// the tests, to sign.
public struct TokenClaims: JWTPayload, Equatable {
    public var sub: String?
    /// Unix seconds.
    public var exp: Int64?
    public var nbf: Int64?
    public var iat: Int64?
    public var iss: String?
    /// `aud`: one string or an array of strings.
    public var aud: [String]?
    public var publish: [String]?
    public var subscribe: [String]?
    /// `true`: an operator's token (the admin routes accept it as they accept the API key). An
    /// additive extension of PROTOCOL.md's claims (docs/security.md).
    public var admin: Bool?

    public init(
        sub: String? = nil, exp: Int64? = nil, nbf: Int64? = nil, iat: Int64? = nil, iss: String? = nil, aud: [String]? = nil,
        publish: [String]? = nil, subscribe: [String]? = nil, admin: Bool? = nil
    ) {
        self.sub = sub
        self.exp = exp
        self.nbf = nbf
        self.iat = iat
        self.iss = iss
        self.aud = aud
        self.publish = publish
        self.subscribe = subscribe
        self.admin = admin
    }

    enum CodingKeys: String, CodingKey { case sub, exp, nbf, iat, iss, aud, publish, subscribe, admin }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sub = try container.decodeIfPresent(String.self, forKey: .sub)
        exp = try Self.seconds(container, .exp)
        nbf = try Self.seconds(container, .nbf)
        iat = try Self.seconds(container, .iat)
        iss = try container.decodeIfPresent(String.self, forKey: .iss)
        if let single = try? container.decodeIfPresent(String.self, forKey: .aud) {
            aud = [single]
        } else {
            aud = try container.decodeIfPresent([String].self, forKey: .aud)
        }
        publish = try container.decodeIfPresent([String].self, forKey: .publish)
        subscribe = try container.decodeIfPresent([String].self, forKey: .subscribe)
        admin = try container.decodeIfPresent(Bool.self, forKey: .admin)
    }

    /// NumericDate (RFC 7519 §2): seconds, possibly with a fraction (truncated here).
    private static func seconds(_ container: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys) throws -> Int64? {
        guard let value = try container.decodeIfPresent(Double.self, forKey: key) else { return nil }
        guard value.isFinite, abs(value) < 1e15 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: container, debugDescription: "not a NumericDate")
        }
        return Int64(value.rounded(.down))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(sub, forKey: .sub)
        try container.encodeIfPresent(exp, forKey: .exp)
        try container.encodeIfPresent(nbf, forKey: .nbf)
        try container.encodeIfPresent(iat, forKey: .iat)
        try container.encodeIfPresent(iss, forKey: .iss)
        if let aud { aud.count == 1 ? try container.encode(aud[0], forKey: .aud) : try container.encode(aud, forKey: .aud) }
        try container.encodeIfPresent(publish, forKey: .publish)
        try container.encodeIfPresent(subscribe, forKey: .subscribe)
        try container.encodeIfPresent(admin, forKey: .admin)
    }

    /// The broker checks the claims itself (`Authenticator.verify`), against its own clock.
    public func verify(using algorithm: some JWTAlgorithm) async throws {}
}

/// Decides who may connect and what they may do (PROTOCOL.md "Who may connect", "What a token
/// permits"): credentials from `Authorization: Bearer` or `?token=`, JWTs verified with jwt-kit
/// (HS256 with `auth.jwt-secret`, RS256 or ES256 with `auth.jwt-public-key`), static client
/// tokens and the API key, anonymous permissions.
///
/// Built once when the server starts (`make`, which loads the key), then used from any thread
/// with no lock: verification is synchronous and takes the current time as an argument, so the
/// rules are tested alone (AuthenticatorTests). Immutable, and shared by reference: every
/// connection keeps the one it was admitted with (for `auth` requests), and a copy of its
/// ~120 bytes in each would be an eighth of what an idle connection costs.
public final class Authenticator: Sendable {
    /// The configured JWT algorithm (jwt-kit's), nil when no JWT key is configured.
    let jwt: (any JWTAlgorithm)?
    /// `HS256`, `RS256` or `ES256`: the only `alg` accepted.
    public let algorithmName: String?
    let staticTokens: [String]
    let audience: String?
    let issuer: String?
    let maxTopicBytes: Int
    /// What a client without credentials may do; nil: it is refused (401).
    public let anonymous: Permissions?
    /// Whether any credential is configured (a JWT key, client tokens, the API key).
    public let hasCredentials: Bool
    /// The identity of every anonymous client, boxed once for all of their connections.
    let anonymousIdentity: IdentityBox?

    /// How far in the future a token's `nbf` may be (clock skew between the issuer and the broker).
    /// `exp` takes none: a token is refused from its `exp` on, which is also when an open
    /// connection using it ends (`token_expired`).
    public static let notBeforeLeeway: Int64 = 5

    /// Builds the authenticator for `configuration`, loading the JWT public key file if any.
    public static func make(_ configuration: BrokerConfiguration) async throws -> Authenticator {
        let jwt = try await makeAlgorithm(
            secret: configuration.jwtSecret, publicKeyPath: configuration.jwtPublicKeyPath, privateKeyPath: nil)
        return Authenticator(configuration: configuration, jwt: jwt)
    }

    init(configuration: BrokerConfiguration, jwt: (any JWTAlgorithm)?) {
        self.jwt = jwt
        self.algorithmName = jwt?.name
        var tokens = configuration.clientTokens.filter { !$0.isEmpty }
        if let key = configuration.apiKey, !key.isEmpty { tokens.append(key) }
        self.staticTokens = tokens
        self.audience = configuration.jwtAudience
        self.issuer = configuration.jwtIssuer
        self.maxTopicBytes = configuration.maxTopicBytes
        self.hasCredentials = jwt != nil || !tokens.isEmpty
        self.anonymous = Self.anonymousPermissions(configuration, hasCredentials: hasCredentials)
        self.anonymousIdentity = anonymous.map { IdentityBox(Identity(kind: .anonymous, permissions: $0)) }
    }

    /// Anonymous clients: the anonymous lists when either is set; otherwise everything on an open
    /// broker (no credentials), and refused when credentials are configured (PROTOCOL.md: "When
    /// auth is configured and both lists are empty, a request without credentials is refused").
    /// `auth.allow-anonymous` changes nothing here: it only lets an open broker listen beyond
    /// loopback, so adding a secret to a deployment that sets it never opens anything.
    static func anonymousPermissions(_ configuration: BrokerConfiguration, hasCredentials: Bool) -> Permissions? {
        let publish = configuration.anonymousPublish.filter { (try? Topic.validateFilter($0)) != nil }
        let subscribe = configuration.anonymousSubscribe.filter { (try? Topic.validateFilter($0)) != nil }
        if !publish.isEmpty || !subscribe.isEmpty { return Permissions(publish: publish, subscribe: subscribe) }
        return hasCredentials ? nil : .everything
    }

    /// jwt-kit's algorithm for an HS256 secret, or for a PEM key file: an RSA key gives RS256, a
    /// P-256 key ES256. `privateKeyPath` (signing, `broker token create`) takes a private key.
    public static func makeAlgorithm(secret: String?, publicKeyPath: String?, privateKeyPath: String?) async throws
        -> (any JWTAlgorithm)?
    {
        let keys = JWTKeyCollection()
        if let secret, !secret.isEmpty {
            // HMAC pads a key shorter than the hash's block with zero bytes (RFC 2104), so padding
            // it to 32 bytes here signs and verifies exactly the same; jwt-kit asserts (in debug
            // builds) on keys shorter than the digest.
            var bytes = Array(secret.utf8)
            if bytes.count < 32 { bytes += [UInt8](repeating: 0, count: 32 - bytes.count) }
            await keys.add(hmac: HMACKey(from: bytes), digestAlgorithm: .sha256)
        } else if let path = privateKeyPath ?? publicKeyPath {
            let pem = try String(contentsOfFile: path, encoding: .utf8)
            let isPrivate = privateKeyPath != nil
            if isPrivate, let key = try? Insecure.RSA.PrivateKey(pem: pem) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
            } else if isPrivate, let key = try? ES256PrivateKey(pem: pem) {
                await keys.add(ecdsa: key)
            } else if !isPrivate, let key = try? Insecure.RSA.PublicKey(pem: pem) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
            } else if !isPrivate, let key = try? ES256PublicKey(pem: pem) {
                await keys.add(ecdsa: key)
            } else {
                throw AuthRefusal(
                    "\(path): not a PEM \(isPrivate ? "private" : "public") key for RS256 (RSA) or ES256 (P-256)")
            }
        } else {
            return nil
        }
        return try await keys.getKey()
    }

    /// Signs `claims` with `algorithm` (from `makeAlgorithm`): `broker token create` and tests.
    public static func sign(_ claims: TokenClaims, secret: String?, privateKeyPath: String?) async throws -> String {
        let keys = JWTKeyCollection()
        if let secret, !secret.isEmpty {
            var bytes = Array(secret.utf8)
            if bytes.count < 32 { bytes += [UInt8](repeating: 0, count: 32 - bytes.count) }
            await keys.add(hmac: HMACKey(from: bytes), digestAlgorithm: .sha256)
        } else if let privateKeyPath {
            let pem = try String(contentsOfFile: privateKeyPath, encoding: .utf8)
            if let key = try? Insecure.RSA.PrivateKey(pem: pem) {
                await keys.add(rsa: key, digestAlgorithm: .sha256)
            } else if let key = try? ES256PrivateKey(pem: pem) {
                await keys.add(ecdsa: key)
            } else {
                throw AuthRefusal("\(privateKeyPath): not a PEM private key for RS256 (RSA) or ES256 (P-256)")
            }
        } else {
            throw AuthRefusal("no signing key: set auth.jwt-secret or give a private key")
        }
        return try await keys.sign(claims)
    }

    // MARK: Credentials

    /// The credential of an HTTP request: `Authorization: Bearer TOKEN`, else `?token=TOKEN`.
    public static func credential(of head: HTTPRequestHead) -> String? {
        if let bearer = bearerToken(head.headers), !bearer.isEmpty { return bearer }
        guard head.uri.utf8.contains(UInt8(ascii: "?")) else { return nil }
        let token = HTTPRequestHandler.split(head.uri).query["token"]
        return token?.isEmpty == false ? token : nil
    }

    /// Who is connecting with this upgrade request, or why not.
    public func authenticate(_ head: HTTPRequestHead, now: Date = Date()) -> Result<Identity, AuthRefusal> {
        authenticate(credential: Self.credential(of: head), now: now)
    }

    /// Who presents `credential` (nil: none), or why not.
    public func authenticate(credential: String?, now: Date = Date()) -> Result<Identity, AuthRefusal> {
        guard let credential else {
            guard let anonymous else { return .failure(AuthRefusal("credentials required: send a bearer token")) }
            return .success(Identity(kind: .anonymous, permissions: anonymous))
        }
        if isStaticToken(credential) { return .success(Identity(kind: .staticToken, permissions: .everything)) }
        guard jwt != nil else {
            if !hasCredentials, let anonymous {
                // An open broker ignores what it cannot check (a v1 client may send something).
                return .success(Identity(kind: .anonymous, permissions: anonymous))
            }
            return .failure(AuthRefusal("unknown token"))
        }
        return verify(jwt: credential, now: now)
    }

    /// Compares with every static token in time independent of where they differ.
    func isStaticToken(_ credential: String) -> Bool {
        var accepted = false
        for token in staticTokens { accepted = constantTimeEquals(credential, token) || accepted }
        return accepted
    }

    /// Verifies a JWT: its `alg` must be the configured one, its signature good, `exp` not passed,
    /// `nbf` not more than `notBeforeLeeway` away, `iss`/`aud` as configured; then resolves its
    /// permissions (with `{sub}` replaced).
    public func verify(jwt token: String, now: Date = Date()) -> Result<Identity, AuthRefusal> {
        Result { () throws(AuthRefusal) -> Identity in try verifyJWT(token, now: now) }
    }

    private func verifyJWT(_ token: String, now: Date) throws(AuthRefusal) -> Identity {
        guard let jwt, let algorithmName else { throw AuthRefusal("tokens are not accepted") }
        let parts = token.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { throw AuthRefusal("malformed token") }
        let header: JWTHeader
        let claims: TokenClaims
        do {
            (header, claims, _) = try DefaultJWTParser().parse(Array(token.utf8), as: TokenClaims.self)
        } catch {
            throw AuthRefusal("malformed token")
        }
        guard header.alg == algorithmName else {
            // The name comes from the request: echoed (in the 401 and the log) only when it looks
            // like an algorithm name.
            let alg = header.alg ?? "none"
            let shown = alg.utf8.count <= 16 && alg.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) } ? alg : "?"
            throw AuthRefusal("token algorithm \(shown) is not accepted (\(algorithmName) only)")
        }
        guard let signature = Self.base64URLDecode(parts[2]) else { throw AuthRefusal("malformed token") }
        let signingInput = Array(token.utf8[..<parts[1].endIndex])
        let valid = (try? jwt.verify(signature, signs: signingInput)) ?? false
        guard valid else { throw AuthRefusal("bad token signature") }

        let seconds = Int64(now.timeIntervalSince1970.rounded(.down))
        if let exp = claims.exp, seconds >= exp { throw AuthRefusal("token expired") }
        if let nbf = claims.nbf, seconds + Self.notBeforeLeeway < nbf { throw AuthRefusal("token not yet valid") }
        if let issuer, claims.iss != issuer { throw AuthRefusal("token issuer is not accepted") }
        if let audience, !(claims.aud ?? []).contains(audience) { throw AuthRefusal("token audience is not accepted") }

        let permissions = Permissions(
            publish: try filters(claims.publish, sub: claims.sub, claim: "publish"),
            subscribe: try filters(claims.subscribe, sub: claims.sub, claim: "subscribe"))
        return Identity(
            kind: .jwt, client: claims.sub, expiresAt: claims.exp, permissions: permissions, isAdmin: claims.admin == true)
    }

    /// A permission claim's filters with `{sub}` replaced, each a valid filter.
    private func filters(_ claim: [String]?, sub: String?, claim name: String) throws(AuthRefusal) -> [String] {
        var filters: [String] = []
        for written in claim ?? [] {
            var filter = written
            if filter.contains("{sub}") {
                guard let sub, !sub.isEmpty, !sub.utf8.contains(where: { $0 == 0x2F || $0 == 0x2B || $0 == 0x23 || $0 == 0 }) else {
                    throw AuthRefusal("token sub cannot be used in a filter (empty, or contains / + # or NUL)")
                }
                filter = filter.replacingOccurrences(of: "{sub}", with: sub)
            }
            do { try Topic.validateFilter(filter, maxBytes: maxTopicBytes) } catch {
                throw AuthRefusal("token \(name) filter '\(written)' is invalid: \(error)")
            }
            filters.append(filter)
        }
        return filters
    }

    /// Checks a filter as a token's permission claim carries it (`{sub}` standing for a name).
    public static func validatePermissionFilter(_ filter: String) throws(AuthRefusal) {
        do { try Topic.validateFilter(filter.replacingOccurrences(of: "{sub}", with: "x")) } catch {
            throw AuthRefusal("'\(filter)': invalid filter: \(error)")
        }
    }

    static func base64URLDecode(_ text: some Collection<UInt8>) -> [UInt8]? {
        var base64 = String(decoding: text, as: UTF8.self)
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map(Array.init)
    }
}
