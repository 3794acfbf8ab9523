import NIOCore
import Testing

@testable import BrokerProtocol

/// The v1.1 messages of access control: `refresh`, `refreshed`, `unsubscribed` with a reason, and
/// `welcome`'s `client` and `exp`, encoded and parsed.
@Suite struct AuthMessagesTests {
    func encode(_ body: (inout ByteBuffer) -> Void) -> String {
        var buffer = ByteBuffer()
        body(&buffer)
        return String(buffer: buffer)
    }

    @Test func refreshIsParsedWithItsTokenAndID() throws {
        let parsed = try ControlRequest.parseText(ByteBuffer(string: #"{"op":"refresh","token":"a.b.c","id":7}"#)).get()
        guard case .refresh(let token) = parsed.request else {
            Issue.record("not a refresh: \(parsed.request)")
            return
        }
        #expect(token == "a.b.c")
        #expect(parsed.id?.json == "7")
        for bad in [#"{"op":"refresh","id":1}"#, #"{"op":"refresh","token":5,"id":1}"#] {
            guard case .failure(let error) = ControlRequest.parseText(ByteBuffer(string: bad)) else {
                Issue.record("accepted \(bad)")
                continue
            }
            #expect(error.code == .badRequest && error.id?.json == "1")
        }
    }

    @Test func refreshedAndEndedSubscriptionsRoundTrip() throws {
        let refreshed = encode { ServerMessageEncoder.refreshed(exp: 1_800_000_000, id: RequestID(7), into: &$0) }
        #expect(refreshed == #"{"op":"refreshed","exp":1800000000,"id":7}"#)
        let noExp = encode { ServerMessageEncoder.refreshed(exp: nil, id: nil, into: &$0) }
        #expect(noExp == #"{"op":"refreshed","exp":null}"#)
        guard case .refreshed(let exp, let id) = try ServerMessage.parseText(ByteBuffer(string: refreshed)) else {
            Issue.record("refreshed not parsed")
            return
        }
        #expect(exp == 1_800_000_000 && id?.json == "7")

        let ended = encode { ServerMessageEncoder.unsubscribed(topic: "news/#", id: nil, reason: "forbidden", into: &$0) }
        #expect(ended == #"{"op":"unsubscribed","topic":"news/#","reason":"forbidden"}"#)
        guard case .subscriptionEnded(let topic, let reason) = try ServerMessage.parseText(ByteBuffer(string: ended)) else {
            Issue.record("unsubscribed with a reason not parsed")
            return
        }
        #expect(topic == "news/#" && reason == "forbidden")
        // Without a reason: the reply to an unsubscribe, as in v1.
        let reply = encode { ServerMessageEncoder.unsubscribed(topic: "a", id: RequestID(1), into: &$0) }
        #expect(reply == #"{"op":"unsubscribed","topic":"a","id":1}"#)
    }

    @Test func welcomeCarriesClientAndExpOnlyWhenKnown() throws {
        let plain = Welcome(server: "s", session: "x", maxMessageBytes: 1, epoch: "e")
        #expect(!encode { ServerMessageEncoder.welcome(plain, into: &$0) }.contains("client"))
        var named = plain
        named.client = "alice"
        named.exp = 1_800_000_000
        let text = encode { ServerMessageEncoder.welcome(named, into: &$0) }
        #expect(text.hasSuffix(#","client":"alice","exp":1800000000}"#))
        guard case .welcome(let parsed) = try ServerMessage.parseText(ByteBuffer(string: text)) else {
            Issue.record("welcome not parsed")
            return
        }
        #expect(parsed == named)
    }
}
