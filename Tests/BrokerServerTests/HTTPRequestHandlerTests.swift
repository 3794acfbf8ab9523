import BrokerJournal
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BrokerServer

/// The HTTP handler on an EmbeddedChannel: request parts in, response parts out, no sockets.
/// The journal answers as tasks of the embedded loop (`EmbeddedLoopJournal`), so after
/// `loop.run()` every answer owed has been written: a response that is not there then never comes.
@Suite struct HTTPRequestHandlerTests {
    struct Harness {
        let channel: EmbeddedChannel
        let loop: EmbeddedEventLoop
        let broker: Broker

        init(configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
            loop = EmbeddedEventLoop()
            var configuration = BrokerConfiguration()
            configure(&configuration)
            broker = Broker(
                configuration: configuration, journal: EmbeddedLoopJournal(loop: loop), eventLoops: [loop],
                logger: Logger(label: "test"))
            let hooks = ServerHooks(isListening: { true }, renderMetrics: { Array("m 1\n".utf8) }, admission: .open(configuration))
            channel = EmbeddedChannel(loop: loop)
            try channel.pipeline.syncOperations.addHandler(HTTPRequestHandler(broker: broker, server: hooks, webSocketPaths: ["/ws"]))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        }

        func head(_ method: HTTPMethod, _ uri: String, _ headers: [(String, String)] = []) throws {
            try channel.writeInbound(HTTPServerRequestPart.head(HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: HTTPHeaders(headers))))
        }

        func body(_ text: String) throws { try channel.writeInbound(HTTPServerRequestPart.body(ByteBuffer(string: text))) }
        func end() throws { try channel.writeInbound(HTTPServerRequestPart.end(nil)) }

        /// The next response: status, headers and body; nil when there is none once the loop has
        /// run every task it has (the journal's answers included).
        func response() throws -> (status: HTTPResponseStatus, headers: HTTPHeaders, body: String)? {
            loop.run()
            guard case .head(let head)? = try channel.readOutbound(as: HTTPServerResponsePart.self) else { return nil }
            var body = ""
            while let part = try channel.readOutbound(as: HTTPServerResponsePart.self) {
                if case .body(.byteBuffer(let buffer)) = part { body += String(buffer: buffer) }
                if case .end = part { break }
            }
            return (head.status, head.headers, body)
        }
    }

    @Test func declaredLengthOverTheLimitIsRefusedBeforeTheBody() throws {
        let harness = try Harness { $0.maxMessageBytes = 10 }
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Length", "11"), ("Content-Type", "application/json")])
        let response = try #require(try harness.response())
        #expect(response.status == .payloadTooLarge)
        #expect(response.headers["Connection"] == ["close"])
        #expect(response.body.contains(#""code":"too_large""#))
        // The rest of the request is dropped, and nothing else is answered.
        try harness.body("12345678901")
        try harness.end()
        #expect(try harness.response() == nil)
        #expect(!harness.channel.isActive)
    }

    @Test func receivedBodyOverTheLimitIsRefusedAsSoonAsItPassesIt() throws {
        let harness = try Harness { $0.maxMessageBytes = 10 }
        try harness.head(.POST, "/api/publish?topic=a", [("Transfer-Encoding", "chunked")])
        try harness.body("123456")
        #expect(try harness.response() == nil)
        try harness.body("123456")
        #expect(try harness.response()?.status == .payloadTooLarge)
    }

    @Test func batchesHaveTheirOwnLimit() throws {
        let harness = try Harness { $0.maxMessageBytes = 10; $0.maxBatchBytes = 100 }
        let batch = #"[{"topic":"a","data":"0123456789"}]"#
        try harness.head(.POST, "/api/publish", [("Content-Length", "\(batch.utf8.count)"), ("Content-Type", "application/json")])
        try harness.body(batch)
        try harness.end()
        let response = try #require(try harness.response())
        #expect(response.status == .ok)
        #expect(response.body == "{\"results\":[{}]}\n")
    }

    @Test func routesAndMethods() throws {
        let harness = try Harness()
        try harness.head(.HEAD, "/healthz")
        try harness.end()
        let head = try #require(try harness.response())
        #expect(head.status == .ok && head.body.isEmpty && head.headers["Content-Length"] == ["3"])
        try harness.head(.GET, "/metrics")
        try harness.end()
        let metrics = try #require(try harness.response())
        #expect(metrics.body == "m 1\n")
        try harness.head(.DELETE, "/metrics")
        try harness.end()
        let wrong = try #require(try harness.response())
        #expect(wrong.status == .methodNotAllowed && wrong.headers["Allow"] == ["GET"])
        try harness.head(.GET, "/ws")
        try harness.end()
        #expect(try harness.response()?.status == .upgradeRequired)
    }

    @Test func idleConnectionsAreClosedAndAnsweredOnesRearmTheTimer() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        harness.loop.advanceTime(by: .seconds(4))
        try harness.head(.GET, "/healthz")
        try harness.end()
        #expect(try harness.response()?.status == .ok)
        harness.loop.advanceTime(by: .seconds(4))
        #expect(harness.channel.isActive)  // re-armed by the answer
        try harness.head(.GET, "/healthz")  // a slow request: the head, then nothing
        harness.loop.advanceTime(by: .seconds(2))
        #expect(!harness.channel.isActive)
    }
}

/// The idle timer on the loop's clock, and the routes that wait for the journal.
extension HTTPRequestHandlerTests {
    @Test func connectionThatNeverSendsARequestIsClosedAtTheIdleTimeoutNotBefore() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        harness.loop.advanceTime(by: .seconds(5) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(!harness.channel.isActive)
        #expect(try harness.response() == nil)  // closed without a word
    }

    @Test func requestInProgressDoesNotRearmTheTimer() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        try harness.head(.POST, "/api/publish?topic=a", [("Content-Type", "application/json")])
        harness.loop.advanceTime(by: .seconds(3))
        try harness.body("1")  // a body trickling in does not buy time
        harness.loop.advanceTime(by: .seconds(2) - .nanoseconds(1))
        #expect(harness.channel.isActive)
        harness.loop.advanceTime(by: .nanoseconds(1))
        #expect(!harness.channel.isActive)
    }

    /// What the WebSocket upgrade does: the handler leaves the pipeline, and its timer with it.
    @Test func removedHandlerLeavesTheConnectionOpen() throws {
        let harness = try Harness { $0.httpIdleTimeout = .seconds(5) }
        harness.loop.advanceTime(by: .seconds(4))
        let handler = try harness.channel.pipeline.syncOperations.context(handlerType: HTTPRequestHandler.self)
        try harness.channel.pipeline.syncOperations.removeHandler(context: handler).wait()
        harness.loop.advanceTime(by: .seconds(60))
        #expect(harness.channel.isActive)
    }

    @Test func journalRoutesAnswerOnceTheLoopHasRun() throws {
        let harness = try Harness()
        try harness.head(.GET, "/readyz")
        try harness.end()
        let ready = try #require(try harness.response())
        #expect(ready.status == .ok && ready.body == #"{"ready":true}"# + "\n")

        let body = #"{"t":21.5}"#
        try harness.head(.POST, "/api/publish?topic=s/a&retain=true", [("Content-Type", "application/json"), ("Content-Length", "\(body.utf8.count)")])
        try harness.body(body)
        try harness.end()
        let published = try #require(try harness.response())
        #expect(published.status == .ok && published.body == #"{"offset":1}"# + "\n")

        try harness.head(.GET, "/api/retained?topic=s/%2B")
        try harness.end()
        let listed = try #require(try harness.response())
        #expect(listed.status == .ok)
        #expect(listed.body.hasPrefix(#"{"epoch":"e1","messages":[{"topic":"s/a","offset":1,"timestamp":"#))
        #expect(listed.body.hasSuffix(#""data":{"t":21.5}}],"next":null}"# + "\n"))

        try harness.head(.GET, "/api/stats")
        try harness.end()
        let stats = try #require(try harness.response())
        #expect(stats.status == .ok && stats.body.contains(#""messages":1"#), "\(stats.body)")

        try harness.head(.DELETE, "/api/retained?topic=s/%23")
        try harness.end()
        let cleared = try #require(try harness.response())
        #expect(cleared.status == .ok && cleared.body == #"{"cleared":1}"# + "\n")
        #expect(try harness.response() == nil)
    }

    /// The journal's writer has two seconds, on the loop's clock, to answer a readiness check.
    @Test func journalThatDoesNotAnswerIsNotReadyAfterTwoSeconds() throws {
        let harness = try Harness()
        (harness.broker.journal as! EmbeddedLoopJournal).stuck = true
        try harness.head(.GET, "/readyz")
        try harness.end()
        harness.loop.advanceTime(by: .seconds(2) - .nanoseconds(1))
        #expect(try harness.response() == nil)
        harness.loop.advanceTime(by: .nanoseconds(1))
        let response = try #require(try harness.response())
        #expect(response.status == .serviceUnavailable && response.body.contains(#""code":"not_ready""#))
    }
}
