import BrokerJournal
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BrokerServer

/// What the HTTP handler refuses from a request's head alone, before a byte of its body is
/// taken (the API key, a body where none belongs), and the budget of body bytes in flight over
/// every connection (`http.max-body-bytes-in-flight`).
extension HTTPRequestHandlerTests {
    /// Another connection to the broker of `harness`.
    static func secondChannel(_ harness: Harness) throws -> EmbeddedChannel {
        let hooks = ServerHooks(isListening: { true }, renderMetrics: nil, admission: .open(harness.broker.configuration))
        let channel = EmbeddedChannel(loop: harness.loop)
        try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(broker: harness.broker, server: hooks, webSocketPaths: ["/ws"]))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        return channel
    }

    static func status(of channel: EmbeddedChannel, _ loop: EmbeddedEventLoop) throws -> HTTPResponseStatus? {
        loop.run()
        guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
        while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) { if case .end = part { break } }
        return head.status
    }

    @Test func aRequestWithoutTheAPIKeyIsRefusedAtItsHeadAndTheBodyIsNeverRead() throws {
        let harness = try Harness { $0.apiKey = "secret" }
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Length", "1000000"), ("Content-Type", "application/json")])
        // No body byte sent: the answer is there already, and the connection goes.
        let response = try #require(try harness.response())
        #expect(response.status == .unauthorized)
        #expect(response.headers["WWW-Authenticate"].first?.hasPrefix("Bearer") == true)
        #expect(response.headers["Connection"] == ["close"])
        #expect(response.body.contains(#""code":"unauthorized""#))
        #expect(!harness.channel.isActive)
        #expect(harness.broker.httpBodyBudget.inUse == 0)
    }

    @Test func aWrongKeyIsRefusedAtTheHeadToo() throws {
        let harness = try Harness { $0.apiKey = "secret" }
        try harness.head(.POST, "/api/publish?topic=a", [("Transfer-Encoding", "chunked"), ("X-API-Key", "guess")])
        #expect(try harness.response()?.status == .unauthorized)
        try harness.body("1234")
        try harness.end()
        #expect(try harness.response() == nil)
    }

    @Test func theRightKeyStillPublishes() throws {
        let harness = try Harness { $0.apiKey = "secret" }
        try harness.head(
            .POST, "/api/publish?topic=a", [("Content-Length", "1"), ("Content-Type", "application/json"), ("X-API-Key", "secret")])
        try harness.body("1")
        try harness.end()
        #expect(try harness.response()?.status == .ok)
        #expect(harness.broker.httpBodyBudget.inUse == 0)
    }

    @Test(
        "a request that takes no body is refused when it declares one",
        arguments: [
            (HTTPMethod.GET, "/api/stats", ("Content-Length", "5")),
            (HTTPMethod.GET, "/healthz", ("Transfer-Encoding", "chunked")),
            (HTTPMethod.DELETE, "/api/retained?topic=a", ("Content-Length", "8000000")),
            (HTTPMethod.OPTIONS, "/api/publish", ("Transfer-Encoding", "chunked")),
            (HTTPMethod.HEAD, "/healthz", ("Content-Length", "1")),
        ])
    func bodyWhereNoneBelongs(method: HTTPMethod, uri: String, header: (String, String)) throws {
        let harness = try Harness()
        try harness.head(method, uri, [header])
        let response = try #require(try harness.response())
        #expect(response.status == .badRequest)
        #expect(response.headers["Connection"] == ["close"])
        #expect(!harness.channel.isActive)
    }

    @Test func aGetWithAnEmptyBodyDeclaredIsFine() throws {
        let harness = try Harness()
        try harness.head(.GET, "/healthz", [("Content-Length", "0")])
        try harness.end()
        #expect(try harness.response()?.status == .ok)
    }

    @Test func bodiesInFlightOverTheBudgetAre503AndTheBudgetComesBack() throws {
        let harness = try Harness { $0.maxHTTPBodyBytesInFlight = 100 }
        let json = [("Content-Type", "application/json")]
        // The first connection declares 60 bytes and sends 10: it holds 60 of the budget.
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Length", "60")] + json)
        try harness.body("\"" + String(repeating: "x", count: 9))
        #expect(harness.broker.httpBodyBudget.inUse == 60)

        let second = try Self.secondChannel(harness)
        try second.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(
            version: .http1_1, method: .POST, uri: "/api/publish?topic=b", headers: HTTPHeaders([("Content-Length", "60")] + json))))
        #expect(try Self.status(of: second, harness.loop) == .serviceUnavailable)
        #expect(!second.isActive)
        #expect(harness.broker.httpBodyBudget.inUse == 60)

        // The first finishes and is answered: its share comes back.
        try harness.body(String(repeating: "x", count: 49) + "\"")
        try harness.end()
        #expect(try harness.response()?.status == .ok)
        #expect(harness.broker.httpBodyBudget.inUse == 0)

        let third = try Self.secondChannel(harness)
        try third.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(
            version: .http1_1, method: .POST, uri: "/api/publish?topic=b", headers: HTTPHeaders([("Content-Length", "60")] + json))))
        try third.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: "\"" + String(repeating: "y", count: 58) + "\"")))
        try third.writeInbound(HTTPServerRequestPart.end(nil))
        #expect(try Self.status(of: third, harness.loop) == .ok)
    }

    @Test func chunkedBodiesTakeFromTheBudgetAsTheyCome() throws {
        let harness = try Harness { $0.maxHTTPBodyBytesInFlight = 100 }
        try harness.head(.POST, "/api/publish?topic=a", [("Transfer-Encoding", "chunked")])
        try harness.body(String(repeating: "x", count: 60))
        #expect(try harness.response() == nil)
        #expect(harness.broker.httpBodyBudget.inUse == 60)
        try harness.body(String(repeating: "x", count: 60))
        #expect(try harness.response()?.status == .serviceUnavailable)
        #expect(harness.broker.httpBodyBudget.inUse == 0)
        #expect(!harness.channel.isActive)
    }

    @Test func aConnectionThatGoesMidBodyGivesItsShareBack() throws {
        let harness = try Harness { $0.maxHTTPBodyBytesInFlight = 100 }
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Length", "80")])
        #expect(harness.broker.httpBodyBudget.inUse == 80)
        try harness.channel.close().wait()
        harness.loop.run()
        #expect(harness.broker.httpBodyBudget.inUse == 0)
    }
}
