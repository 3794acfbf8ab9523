import Foundation
import JWTKit
import Testing

@testable import BrokerServer

// The Swift snippet of docs/security.md ("Issuing tokens from a backend"), compiled here: the
// lines between the snippet markers are the document's lines, which the first test checks.
// (scripts/doc-snippets runs the Python and Node.js snippets against the real binary.)

// snippet:begin
struct BrokerClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var subscribe: [String]
    var publish: [String]
    func verify(using algorithm: some JWTAlgorithm) throws { try exp.verifyNotExpired() }
}
// snippet:end

private func issueTokenAsTheDocumentDoes(secret: String) async throws -> String {
    // snippet:begin
    let keys = JWTKeyCollection()
    await keys.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
    let token = try await keys.sign(BrokerClaims(
        sub: "alice", exp: .init(value: .now.addingTimeInterval(3600)),
        subscribe: ["dash/#"], publish: ["cmd/alice"]))
    // snippet:end
    return token
}

@Suite struct SecurityDocSnippetTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The lines, trimmed, without blank ones and imports (this file has its own).
    static func lines(_ text: some StringProtocol) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("import ") }
    }

    @Test func theDocumentShowsTheCodeCompiledHere() throws {
        let document = try String(contentsOf: Self.root.appendingPathComponent("docs/security.md"), encoding: .utf8)
        let section = try #require(document.components(separatedBy: "## Issuing tokens from a backend").dropFirst().first)
        let block = try #require(section.components(separatedBy: "```swift\n").dropFirst().first?
            .components(separatedBy: "```").first)
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let compiled = source.components(separatedBy: "// snippet:begin\n").dropFirst()
            .compactMap { $0.components(separatedBy: "// snippet:end").first }
        #expect(compiled.count == 2)
        #expect(Self.lines(block) == compiled.flatMap { Self.lines($0) })
    }

    @Test func itsTokenIsAcceptedWithTheClaimsTheDocumentPromises() async throws {
        let secret = "doc-snippet-secret-of-at-least-32-bytes"
        let token = try await issueTokenAsTheDocumentDoes(secret: secret)
        var configuration = BrokerConfiguration()
        configuration.jwtSecret = secret
        let authenticator = try await Authenticator.make(configuration)
        guard case .success(let identity) = authenticator.authenticate(credential: token, now: Date()) else {
            Issue.record("the broker refused the document's token")
            return
        }
        #expect(identity.client == "alice")
        #expect(identity.permissions.maySubscribe(to: "dash/+/cpu"))
        #expect(identity.permissions.mayPublish(to: "cmd/alice"))
        #expect(!identity.permissions.mayPublish(to: "dash/x"))
    }
}
