import ArgumentParser
import BrokerServer
import BrokerSettings
import Foundation
import JWTKit

/// `broker token create|verify`: issue and inspect the JWTs the broker accepts (like Centrifugo's
/// `gentoken`), with the key of the broker's own settings (config file, BROKER_* variables).
struct Token: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or verify client tokens (JWTs) with the broker's configured key.",
        subcommands: [Create.self, Verify.self, Bench.self])

    /// The key settings: `--config` / BROKER_CONFIG, the environment, then the flags given here.
    struct KeyOptions: ParsableArguments {
        @Option(help: ArgumentHelp("Configuration file (YAML or TOML) to read the auth.* settings from; also BROKER_CONFIG.", valueName: "file"))
        var config: String?

        @Option(name: .customLong("auth-jwt-secret"), help: ArgumentHelp("HS256 secret (default: the configured auth.jwt-secret; prefer BROKER_AUTH_JWT_SECRET).", valueName: "secret"))
        var secret: String?

        @Option(name: .customLong("auth-jwt-public-key"), help: ArgumentHelp("PEM public key for RS256/ES256 (default: the configured auth.jwt-public-key).", valueName: "file"))
        var publicKey: String?

        func settings() throws -> BrokerSettings {
            var flags: [String] = []
            if let secret { flags += ["--auth-jwt-secret", secret] }
            if let publicKey { flags += ["--auth-jwt-public-key", publicKey] }
            do {
                return try SettingsLoader.resolve(
                    configFile: config, environment: ProcessInfo.processInfo.environment,
                    flags: SettingsLoader.fromFlags(flags))
            } catch {
                throw ValidationError("\(error)")
            }
        }
    }

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Sign a token and print it.",
            discussion: """
                HS256 with the configured auth.jwt-secret; with --key, RS256 or ES256 with a PEM \
                private key (RSA or P-256) whose public key the broker has as auth.jwt-public-key. \
                Example: broker token create --sub alice --subscribe 'dash/#' --publish 'cmd/alice' --ttl 1h
                """)

        @OptionGroup var key: KeyOptions

        @Option(help: "The client's name (sub claim); {sub} in a filter is replaced by it.")
        var sub: String?

        @Option(help: ArgumentHelp("A filter the token may subscribe to (repeat for several).", valueName: "filter"))
        var subscribe: [String] = []

        @Option(help: ArgumentHelp("A filter the token may publish to (repeat for several).", valueName: "filter"))
        var publish: [String] = []

        @Flag(help: "An operator's token: the admin routes (/api/stats, /api/connections, /api/topics, /metrics, the dashboard's data) accept it as the API key (admin claim).")
        var admin = false

        @Option(help: ArgumentHelp("Lifetime: seconds, or a number with s, m, h or d (0: no exp).", valueName: "duration"))
        var ttl = "1h"

        @Option(help: ArgumentHelp("aud claim (default: the configured auth.jwt-audience).", valueName: "aud"))
        var audience: String?

        @Option(help: ArgumentHelp("iss claim (default: the configured auth.jwt-issuer).", valueName: "iss"))
        var issuer: String?

        @Option(name: .customLong("key"), help: ArgumentHelp("PEM private key (RSA: RS256, P-256: ES256) instead of the HS256 secret.", valueName: "file"))
        var privateKey: String?

        func run() async throws {
            let settings = try key.settings().server
            guard let lifetime = Self.seconds(ttl) else { throw ValidationError("--ttl: expected seconds or a number with s, m, h or d, got '\(ttl)'") }
            let now = Int64(Date().timeIntervalSince1970)
            let claims = TokenClaims(
                sub: sub, exp: lifetime > 0 ? now + lifetime : nil, iat: now,
                iss: issuer ?? settings.jwtIssuer, aud: (audience ?? settings.jwtAudience).map { [$0] },
                publish: publish, subscribe: subscribe, admin: admin ? true : nil)
            for filter in publish + subscribe {
                do { try Authenticator.validatePermissionFilter(filter) } catch { throw ValidationError("\(error)") }
            }
            let secret = privateKey == nil ? settings.jwtSecret : nil
            guard secret != nil || privateKey != nil else {
                throw ValidationError("no signing key: set auth.jwt-secret (BROKER_AUTH_JWT_SECRET, --config, --auth-jwt-secret) or give --key")
            }
            print(try await Authenticator.sign(claims, secret: secret, privateKeyPath: privateKey))
        }

        /// `90`, `90s`, `15m`, `1h`, `7d`.
        static func seconds(_ text: String) -> Int64? {
            let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86_400]
            if let unit = text.last, let factor = units[unit], let value = Int64(text.dropLast()), value >= 0 {
                return value * factor
            }
            return Int64(text).flatMap { $0 >= 0 ? $0 : nil }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a token's claims and whether the broker would accept it now (exit 1 if not).")

        @OptionGroup var key: KeyOptions

        @Argument(help: "The token.")
        var token: String

        func run() async throws {
            let configuration = try key.settings().server
            // The claims as written, before any check, so that a refused token can be read too.
            let parts = token.split(separator: ".", omittingEmptySubsequences: false)
            if parts.count == 3, let payload = Self.base64URL(parts[1]), let text = String(data: payload, encoding: .utf8) {
                print("claims: \(text)")
            } else {
                print("claims: (unreadable)")
            }
            let authenticator: Authenticator
            do { authenticator = try await Authenticator.make(configuration) } catch {
                throw ValidationError("auth.jwt-public-key: \(error)")
            }
            guard authenticator.algorithmName != nil else {
                throw ValidationError("no key to verify with: set auth.jwt-secret or auth.jwt-public-key")
            }
            switch authenticator.verify(jwt: token) {
            case .success(let identity):
                var line = "valid now (\(authenticator.algorithmName!))"
                if let client = identity.client { line += ", sub \(client)" }
                if let exp = identity.expiresAt {
                    let left = exp - Int64(Date().timeIntervalSince1970)
                    line += ", expires at \(exp) (in \(left) s)"
                } else {
                    line += ", no expiry"
                }
                print(line)
            case .failure(let refusal):
                print("invalid: \(refusal.reason)")
                throw ExitCode.failure
            }
        }

        static func base64URL(_ text: Substring) -> Data? {
            var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while base64.utf8.count % 4 != 0 { base64 += "=" }
            return Data(base64Encoded: base64)
        }
    }

    /// What access control costs: verifying a token on connect, a publish permission check, a
    /// subscribe coverage check. Prints ns/op; a measurement, not a test (nothing asserts on time).
    struct Bench: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure token verification and permission checks (ns/op).",
            discussion: "Build in release for representative numbers: swift run -c release broker token bench")

        @Option(help: "Iterations of each measurement.")
        var iterations = 20_000

        func run() async throws {
            let now = Int64(Date().timeIntervalSince1970)
            let claims = TokenClaims(
                sub: "alice", exp: now + 3600, publish: ["cmd/{sub}", "users/{sub}/#", "telemetry/+/up"],
                subscribe: ["dash/#", "users/{sub}/#", "alerts/+"])
            var configuration = BrokerConfiguration()
            configuration.jwtSecret = "bench-secret-bench-secret-bench-secret"
            let hs = try await Authenticator.make(configuration)
            let hsToken = try await Authenticator.sign(claims, secret: configuration.jwtSecret, privateKeyPath: nil)

            let key = ES256PrivateKey()
            let directory = FileManager.default.temporaryDirectory
            let privatePath = directory.appendingPathComponent("bench-es256-\(UUID().uuidString).pem").path
            let publicPath = directory.appendingPathComponent("bench-es256-\(UUID().uuidString).pub.pem").path
            try key.pemRepresentation.write(toFile: privatePath, atomically: true, encoding: .utf8)
            try key.publicKey.pemRepresentation.write(toFile: publicPath, atomically: true, encoding: .utf8)
            defer {
                try? FileManager.default.removeItem(atPath: privatePath)
                try? FileManager.default.removeItem(atPath: publicPath)
            }
            var es = BrokerConfiguration()
            es.jwtPublicKeyPath = publicPath
            let esAuthenticator = try await Authenticator.make(es)
            let esToken = try await Authenticator.sign(claims, secret: nil, privateKeyPath: privatePath)

            guard case .success(let identity) = hs.authenticate(credential: hsToken) else { throw ValidationError("HS256 token refused") }
            let permissions = identity.permissions
            print("broker token bench: \(iterations) iterations each, \(ProcessInfo.processInfo.activeProcessorCount) cores")
            measure("verify HS256 token on connect (parse, signature, claims, compile 6 filters)", iterations) {
                if case .failure = hs.authenticate(credential: hsToken) { fatalError("refused") }
            }
            measure("verify ES256 token on connect", max(1, iterations / 10)) {
                if case .failure = esAuthenticator.authenticate(credential: esToken) { fatalError("refused") }
            }
            measure("publish check, topic matches the 2nd of 3 filters (users/alice/#)", iterations * 10) {
                if !permissions.mayPublish(to: "users/alice/inbox/42") { fatalError("refused") }
            }
            measure("publish check, topic matches none of 3 filters", iterations * 10) {
                if permissions.mayPublish(to: "dash/room/7/temperature") { fatalError("allowed") }
            }
            measure("publish check, full permissions (static token, open broker)", iterations * 10) {
                if !Permissions.everything.mayPublish(to: "dash/room/7/temperature") { fatalError("refused") }
            }
            measure("subscribe coverage check, dash/+/cpu against 3 filters", iterations) {
                if !permissions.maySubscribe(to: "dash/+/cpu") { fatalError("refused") }
            }
        }

        func measure(_ what: String, _ count: Int, _ body: () -> Void) {
            for _ in 0..<min(count, 100) { body() }  // warm up
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<count { body() }
            let elapsed = clock.now - start
            let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
            print(String(format: "%10.0f ns/op  ", nanoseconds / Double(count)) + what)
        }
    }
}
