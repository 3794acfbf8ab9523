import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// A connection's permissions, `refresh` and token expiry, on an EmbeddedChannel: expiry is
/// driven by advancing the loop's clock, never by waiting.
@Suite struct ConnectionAuthTests {
    typealias Harness = WebSocketConnectionTests.Harness
    static let secret = AuthenticatorTests.secret

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970) }

    static func token(_ claims: TokenClaims) async throws -> String {
        try await Authenticator.sign(claims, secret: secret, privateKeyPath: nil)
    }

    /// A connection admitted with `claims`, its welcome returned, connected (so `isActive` means
    /// something).
    static func connection(_ claims: TokenClaims) async throws -> (Harness, String) {
        var configuration = BrokerConfiguration()
        configuration.jwtSecret = secret
        let authenticator = try await Authenticator.make(configuration)
        guard case .success(let identity) = authenticator.authenticate(credential: try await token(claims)) else {
            throw TestFailure("token refused")
        }
        let harness = try Harness(configure: { $0.jwtSecret = secret }, identity: identity, authenticator: authenticator)
        try await harness.channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        let welcome = try harness.texts()
        return (harness, welcome.first ?? "")
    }

    @Test func welcomeNamesTheClientAndTheExpiry() async throws {
        let exp = Self.now() + 3600
        let (_, welcome) = try await Self.connection(TokenClaims(sub: "alice", exp: exp))
        #expect(welcome.contains(#""client":"alice""#))
        #expect(welcome.contains(#""exp":\#(exp)"#))
        let (_, plain) = try await Self.connection(TokenClaims())
        #expect(!plain.contains("client") && !plain.contains("exp"))
    }

    @Test func publishesAndSubscribesOutsideThePermissionsAreForbiddenAndTheConnectionStays() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", publish: ["cmd/{sub}"], subscribe: ["dash/#"]))
        try harness.sendText(#"{"op":"subscribe","topic":"dash/+/cpu","id":1,"history":0}"#)
        try harness.sendText(##"{"op":"subscribe","topic":"#","id":2}"##)
        try harness.sendText(#"{"op":"publish","topic":"cmd/bob","data":1,"id":"p"}"#)
        try harness.sendText(#"{"op":"publish","topic":"cmd/alice","data":1,"id":"q"}"#)
        let replies = try harness.texts()
        #expect(replies.count == 4, "\(replies)")
        #expect(replies[0] == #"{"op":"subscribed","topic":"dash/+/cpu","id":1}"#)
        #expect(replies[1].contains(#""code":"forbidden""#) && replies[1].contains(#""id":2"#))
        #expect(replies[2].contains(#""code":"forbidden""#) && replies[2].contains(#""id":"p""#))
        #expect(replies[3] == #"{"op":"ack","id":"q"}"#)
        #expect(harness.connection.state == .open)
        #expect(Set(harness.connection.filters.map { String($0.text) }) == ["dash/+/cpu"])
    }

    @Test func forbiddenBinaryPublishGetsATextError() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", publish: ["cmd/alice"]))
        // kind 1, flags: ack requested, topic "x/y", id 7, payload [1, 2]
        var frame: [UInt8] = [0x01, 0x02, 0x00, 0x03] + Array("x/y".utf8) + [0, 0, 0, 7] + [1, 2]
        try harness.send(.binary, frame)
        // Without the ack bit (no id): an error all the same.
        frame = [0x01, 0x00, 0x00, 0x03] + Array("x/y".utf8) + [1, 2]
        try harness.send(.binary, frame)
        let written = try harness.written()
        #expect(written.count == 2)
        #expect(written.allSatisfy { $0.opcode == 0x1 && $0.payload.contains(#""code":"forbidden""#) })
        #expect(written.first?.payload.contains(#""id":7"#) == true)
    }

    @Test func refreshNarrowsThePermissionsAndEndsWhatIsNoLongerCovered() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", exp: Self.now() + 60, subscribe: ["dash/#", "news/#"]))
        try harness.sendText(#"{"op":"subscribe","topic":"dash/cpu","history":0}"#)
        try harness.sendText(#"{"op":"subscribe","topic":"news/+","history":0}"#)
        _ = try harness.texts()
        let exp = Self.now() + 3600
        let narrower = try await Self.token(TokenClaims(sub: "alice", exp: exp, subscribe: ["dash/#"]))
        try harness.sendText(#"{"op":"refresh","token":"\#(narrower)","id":"r"}"#)
        #expect(try harness.texts() == [
            #"{"op":"refreshed","exp":\#(exp),"id":"r"}"#,
            #"{"op":"unsubscribed","topic":"news/+","reason":"forbidden"}"#,
        ])
        #expect(Set(harness.connection.filters.map { String($0.text) }) == ["dash/cpu"])
        try harness.sendText(#"{"op":"subscribe","topic":"news/x","id":1}"#)
        #expect(try harness.texts().first?.contains(#""code":"forbidden""#) == true)
        // The old expiry no longer applies: still open past it.
        harness.loop.advanceTime(by: .seconds(120))
        #expect(harness.channel.isActive && harness.connection.state == .open)
    }

    @Test func invalidRefreshIsUnauthorizedAndTheOldTokenStays() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", subscribe: ["dash/#"]))
        let otherSub = try await Self.token(TokenClaims(sub: "bob", subscribe: ["#"]))
        let expired = try await Self.token(TokenClaims(sub: "alice", exp: Self.now() - 10, subscribe: ["#"]))
        for (index, token) in [otherSub, expired, "garbage"].enumerated() {
            try harness.sendText(#"{"op":"refresh","token":"\#(token)","id":\#(index)}"#)
            let replies = try harness.texts()
            #expect(replies.count == 1 && replies[0].contains(#""code":"unauthorized""#) && replies[0].contains(#""id":\#(index)"#), "\(replies)")
        }
        try harness.sendText(##"{"op":"subscribe","topic":"#","id":"s"}"##)
        #expect(try harness.texts().first?.contains(#""code":"forbidden""#) == true)
        try harness.sendText(#"{"op":"refresh","id":"m"}"#)
        #expect(try harness.texts().first?.contains(#""code":"bad_request""#) == true)
    }

    @Test func expiryWithoutRefreshSendsTokenExpiredThenCloses1008() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", exp: Self.now() + 30, subscribe: ["#"]))
        harness.loop.advanceTime(by: .seconds(25))
        #expect(try harness.written().isEmpty)
        #expect(harness.connection.state == .open)
        harness.loop.advanceTime(by: .seconds(7))  // past exp, within the 5 s close timeout
        let written = try ConnectionTimerTests().frames(harness)
        #expect(written.count == 2, "\(written)")
        #expect(written.first?.opcode == 0x1)
        let error = String(decoding: written.first?.payload ?? [], as: UTF8.self)
        #expect(error.contains(#""code":"token_expired""#))
        let last = try #require(written.last)
        #expect(last.opcode == 0x8)
        #expect(last.closeCode == 1008)
        #expect(last.closeReason == "token expired")
        #expect(harness.connection.state == .closing)
    }

    @Test func refreshBeforeExpiryKeepsTheConnection() async throws {
        let (harness, _) = try await Self.connection(TokenClaims(sub: "alice", exp: Self.now() + 30, subscribe: ["#"]))
        harness.loop.advanceTime(by: .seconds(20))
        let fresh = try await Self.token(TokenClaims(sub: "alice", exp: Self.now() + 600, subscribe: ["#"]))
        try harness.sendText(#"{"op":"refresh","token":"\#(fresh)"}"#)
        #expect(try harness.texts().first?.hasPrefix(#"{"op":"refreshed","exp":"#) == true)
        harness.loop.advanceTime(by: .seconds(60))
        #expect(try harness.written().isEmpty)
        #expect(harness.connection.state == .open)
    }
}
