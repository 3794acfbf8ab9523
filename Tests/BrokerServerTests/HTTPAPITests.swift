import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import BrokerServer

/// The HTTP API (docs/http-api.md): every endpoint and every error status.
@Suite struct HTTPAPITests {
    func subscriber(_ broker: TestBroker, _ filter: String, history: Int = 0) async throws -> RawWebSocketClient {
        let client = try await broker.client()
        try await client.sendText(#"{"op":"subscribe","topic":"\#(filter)","history":\#(history)}"#)
        guard case .subscribed = try await client.nextMessage() else { throw RawWebSocketClient.ClientError.handshake("no subscribed") }
        return client
    }

    @Test func publishJSONReachesSubscribers() async throws {
        try await TestBroker.with { broker in
            let client = try await subscriber(broker, "orders/#")
            let live = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=orders/1", port: broker.port,
                headers: ["Content-Type: application/json"], body: Array(#"{"state":"paid"}"#.utf8))
            #expect(live.status == 200)
            #expect(live.body == "{}\n")
            guard case .message(let delivery) = try await client.nextMessage() else {
                Issue.record("no delivery")
                return
            }
            #expect(delivery.topic == "orders/1")
            #expect(!delivery.isBinary)
            #expect(String(buffer: delivery.payload) == #"{"state":"paid"}"#)
            #expect(delivery.offset == nil)

            let retained = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=orders/2&retain=true", port: broker.port,
                headers: ["Content-Type: application/json; charset=utf-8"], body: Array("42".utf8))
            #expect(retained.status == 200)
            let offset = retained.json?["offset"] as? Int
            #expect(offset != nil)
            guard case .message(let second) = try await client.nextMessage() else {
                Issue.record("no retained delivery")
                return
            }
            #expect(second.offset.map(Int.init) == offset)
            #expect(String(buffer: second.payload) == "42")
            await client.close()
        }
    }

    @Test func otherContentTypesPublishBinary() async throws {
        try await TestBroker.with { broker in
            let client = try await subscriber(broker, "bin/+")
            let bytes: [UInt8] = [0, 1, 2, 255, 254]
            let response = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=bin/a&retain=1", port: broker.port,
                headers: ["Content-Type: application/octet-stream"], body: bytes)
            #expect(response.status == 200)
            #expect(response.json?["offset"] != nil)
            guard case .message(let delivery) = try await client.nextMessage() else {
                Issue.record("no delivery")
                return
            }
            #expect(delivery.isBinary)
            #expect(Array(delivery.payload.readableBytesView) == bytes)

            // And the retained listing gives it back in base64.
            let listed = try await HTTPTestClient.request("GET", "/api/retained?topic=bin/%23", port: broker.port)
            let messages = listed.json?["messages"] as? [[String: Any]]
            #expect(messages?.first?["binary"] as? String == Data(bytes).base64EncodedString())
            await client.close()
        }
    }

    @Test func publishErrors() async throws {
        try await TestBroker.with(configure: { $0.maxMessageBytes = 1_000 }) { broker in
            func post(_ target: String, _ body: String, json: Bool = true) async throws -> HTTPResponse {
                try await HTTPTestClient.request(
                    "POST", target, port: broker.port, headers: json ? ["Content-Type: application/json"] : [], body: Array(body.utf8))
            }
            let notJSON = try await post("/api/publish?topic=a", "{nope")
            #expect(notJSON.status == 400 && notJSON.errorCode == "bad_request")
            let trailing = try await post("/api/publish?topic=a", "1 2")
            #expect(trailing.status == 400 && trailing.errorCode == "bad_request")
            let badUTF8 = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=a", port: broker.port, headers: ["Content-Type: application/json"], body: [0x22, 0xFF, 0x22])
            #expect(badUTF8.status == 400)
            let wildcard = try await post("/api/publish?topic=a/%2B", "1")
            #expect(wildcard.status == 400 && wildcard.errorCode == "invalid_topic")
            let empty = try await post("/api/publish?topic=", "1")
            #expect(empty.status == 400 && empty.errorCode == "invalid_topic")
            let reserved = try await post("/api/publish?topic=$sys/x", "1")
            #expect(reserved.status == 403 && reserved.errorCode == "forbidden")
            let badRetain = try await post("/api/publish?topic=a&retain=maybe", "1")
            #expect(badRetain.status == 400 && badRetain.errorCode == "bad_request")
            let tooLong = try await post("/api/publish?topic=" + String(repeating: "t", count: 300), "1")
            #expect(tooLong.status == 400 && tooLong.errorCode == "invalid_topic")

            // 413: declared length, and a chunked body that grows past the limit.
            let declared = try await post("/api/publish?topic=a", "\"" + String(repeating: "x", count: 2_000) + "\"")
            #expect(declared.status == 413 && declared.errorCode == "too_large")
            let chunked = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=a", port: broker.port, headers: ["Content-Type: application/json"],
                body: Array(repeating: UInt8(ascii: "1"), count: 200_000), chunked: true)
            #expect(chunked.status == 413 && chunked.errorCode == "too_large")
            // A body at the limit is fine.
            let atLimit = try await post("/api/publish?topic=a", "\"" + String(repeating: "x", count: 998) + "\"")
            #expect(atLimit.status == 200)
        }
    }

    @Test func batchPublish() async throws {
        // One event loop: every request is served, and what it publishes written to the
        // subscriber, in the order the requests arrive, so a ping answered after the last response
        // came back is a barrier for what those requests published.
        try await TestBroker.with(configure: { $0.eventLoopThreads = 1 }) { broker in
            let client = try await subscriber(broker, "b/#")
            let body = #"[{"topic":"b/1","data":{"n":1}},{"topic":"b/2","data":[2],"retain":true},{"topic":"b/3","data":"three"}]"#
            let response = try await HTTPTestClient.request(
                "POST", "/api/publish", port: broker.port, headers: ["Content-Type: application/json"], body: Array(body.utf8))
            #expect(response.status == 200)
            let results = response.json?["results"] as? [[String: Any]]
            #expect(results?.count == 3)
            #expect(results?[0].isEmpty == true)
            #expect(results?[1]["offset"] != nil)
            #expect(results?[2].isEmpty == true)
            var received: [String] = []
            for _ in 0..<3 {
                guard case .message(let delivery) = try await client.nextMessage() else { continue }
                received.append("\(delivery.topic)=\(String(buffer: delivery.payload))")
            }
            // In the order of the batch, also across the retained one.
            #expect(received == [#"b/1={"n":1}"#, "b/2=[2]", #"b/3="three""#])
            // From here on, everything published reaches this client.
            try await client.sendText(##"{"op":"subscribe","topic":"#","history":0}"##)
            guard case .subscribed = try await client.nextMessage() else {
                Issue.record("no subscribed")
                return
            }

            func post(_ body: String, json: Bool = true) async throws -> HTTPResponse {
                try await HTTPTestClient.request(
                    "POST", "/api/publish", port: broker.port,
                    headers: json ? ["Content-Type: application/json"] : ["Content-Type: text/plain"], body: Array(body.utf8))
            }
            let badElement = try await post(#"[{"topic":"ok","data":1},{"topic":"a/#","data":1}]"#)
            #expect(badElement.status == 400 && badElement.errorCode == "invalid_topic")
            #expect((badElement.json?["error"] as? [String: Any])?["message"] as? String ?? "" == "element 1: invalid topic: wildcards (+, #) are not allowed in a topic name" || badElement.body.contains("element 1"))
            let missingData = try await post(#"[{"topic":"ok"}]"#)
            #expect(missingData.status == 400 && missingData.body.contains("element 0"))
            let notArray = try await post(#"{"topic":"ok","data":1}"#)
            #expect(notArray.status == 400 && notArray.errorCode == "bad_request")
            let emptyBatch = try await post("[]")
            #expect(emptyBatch.status == 400)
            let plain = try await post("[]", json: false)
            #expect(plain.status == 415 && plain.errorCode == "bad_request")
            // The same at /api/publish/batch (how docs/openapi.yaml names it).
            let alias = try await HTTPTestClient.request(
                "POST", "/api/publish/batch", port: broker.port, headers: ["Content-Type: application/json"],
                body: Array(#"[{"topic":"c/1","data":1}]"#.utf8))
            #expect(alias.status == 200 && alias.body == "{\"results\":[{}]}\n")
            let aliasWithTopic = try await HTTPTestClient.request(
                "POST", "/api/publish/batch?topic=c", port: broker.port, headers: ["Content-Type: application/json"],
                body: Array(#"[{"topic":"c/1","data":1}]"#.utf8))
            #expect(aliasWithTopic.status == 400)
            // Nothing of a refused batch was published: the alias's message, then the pong.
            try await client.sendText(#"{"op":"ping","id":"barrier"}"#)
            var after: [String] = []
            while true {
                let message = try await client.nextMessage()
                if case .pong = message { break }
                if case .message(let delivery) = message {
                    after.append("\(delivery.topic)=\(String(buffer: delivery.payload))")
                } else {
                    after.append("\(message)")
                }
            }
            #expect(after == ["c/1=1"])
            await client.close()
        }
    }

    @Test func batchLimits() async throws {
        try await TestBroker.with(configure: { $0.maxBatchMessages = 2; $0.maxBatchBytes = 100 }) { broker in
            let three = #"[{"topic":"a","data":1},{"topic":"a","data":2},{"topic":"a","data":3}]"#
            let tooMany = try await HTTPTestClient.request(
                "POST", "/api/publish", port: broker.port, headers: ["Content-Type: application/json"], body: Array(three.utf8))
            #expect(tooMany.status == 413 && tooMany.errorCode == "too_large")
            let big = "[" + Array(repeating: #"{"topic":"a","data":1}"#, count: 5).joined(separator: ",") + "]"
            let tooBig = try await HTTPTestClient.request(
                "POST", "/api/publish", port: broker.port, headers: ["Content-Type: application/json"], body: Array(big.utf8))
            #expect(tooBig.status == 413)
        }
    }

    @Test func listingRetainedMessages() async throws {
        try await TestBroker.with { broker in
            var offsets: [Int] = []
            for n in 0..<5 {
                let response = try await HTTPTestClient.request(
                    "POST", "/api/publish?topic=r/\(n % 2)&retain=true", port: broker.port,
                    headers: ["Content-Type: application/json"], body: Array(#"{"n":\#(n)}"#.utf8))
                offsets.append(response.json?["offset"] as? Int ?? -1)
            }
            let all = try await HTTPTestClient.request("GET", "/api/retained?topic=r/%2B", port: broker.port)
            #expect(all.status == 200)
            let messages = all.json?["messages"] as? [[String: Any]] ?? []
            #expect(messages.map { $0["offset"] as? Int } == offsets.map(Optional.some))
            #expect((messages.first?["data"] as? [String: Any])?["n"] as? Int == 0)
            #expect(messages.first?["timestamp"] is Int)
            #expect(all.json?["epoch"] as? String == broker.journal.epoch)
            #expect(all.json?["next"] is NSNull)

            let page = try await HTTPTestClient.request("GET", "/api/retained?topic=r/1&limit=1", port: broker.port)
            let pageMessages = page.json?["messages"] as? [[String: Any]] ?? []
            #expect(pageMessages.count == 1)
            let next = page.json?["next"] as? Int
            #expect(next == offsets[1])
            let rest = try await HTTPTestClient.request("GET", "/api/retained?topic=r/1&since=\(next ?? 0)", port: broker.port)
            #expect((rest.json?["messages"] as? [[String: Any]])?.map { $0["offset"] as? Int } == [offsets[3]])

            #expect(try await HTTPTestClient.request("GET", "/api/retained", port: broker.port).status == 400)
            #expect(try await HTTPTestClient.request("GET", "/api/retained?topic=a/%23/b", port: broker.port).errorCode == "invalid_topic")
            #expect(try await HTTPTestClient.request("GET", "/api/retained?topic=a&limit=0", port: broker.port).status == 400)
            #expect(try await HTTPTestClient.request("GET", "/api/retained?topic=a&since=x", port: broker.port).status == 400)
        }
    }

    @Test func healthReadinessStatsAndRouting() async throws {
        try await TestBroker.with { broker in
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port).body == "ok\n")
            let ready = try await HTTPTestClient.request("GET", "/readyz", port: broker.port)
            #expect(ready.status == 200 && ready.json?["ready"] as? Bool == true)

            let client = try await subscriber(broker, "s/#")
            _ = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=s/1", port: broker.port, headers: ["Content-Type: application/json"], body: Array("[1]".utf8))
            _ = try await client.nextMessage()
            let stats = try await HTTPTestClient.request("GET", "/api/stats", port: broker.port)
            #expect(stats.status == 200)
            #expect(stats.json?["connections"] as? Int == 1)
            #expect(stats.json?["subscriptions"] as? Int == 1)
            #expect(stats.json?["messagesIn"] as? Int == 1)
            #expect(stats.json?["bytesIn"] as? Int == 3)
            #expect(stats.json?["messagesOut"] as? Int == 1)
            #expect((stats.json?["bytesOut"] as? Int ?? 0) > 3)
            #expect(stats.json?["uptimeSeconds"] is Int)
            #expect((stats.json?["journal"] as? [String: Any])?["lastOffset"] is Int)

            for (method, path, allow) in [
                ("POST", "/healthz", "GET, HEAD"), ("DELETE", "/readyz", "GET, HEAD"), ("POST", "/metrics", "GET"),
                ("PUT", "/api/stats", "GET"), ("GET", "/api/publish", "POST"), ("PUT", "/api/retained", "GET, DELETE"),
            ] {
                let response = try await HTTPTestClient.request(method, path, port: broker.port)
                #expect(response.status == 405, "\(method) \(path)")
                #expect(response.errorCode == "method_not_allowed")
                #expect(response.headers["allow"] == allow)
            }
            let missing = try await HTTPTestClient.request("GET", "/api/nothing", port: broker.port)
            #expect(missing.status == 404 && missing.errorCode == "not_found")
            #expect(missing.headers["content-type"] == "application/json")
            await client.close()
        }
    }

    @Test func apiKeyProtectsTheAPI() async throws {
        try await TestBroker.with(configure: { $0.apiKey = "s3cret" }) { broker in
            for path in ["/api/stats", "/metrics", "/api/retained?topic=a"] {
                let refused = try await HTTPTestClient.request("GET", path, port: broker.port)
                #expect(refused.status == 401, "\(path)")
                #expect(refused.errorCode == "unauthorized")
                let wrong = try await HTTPTestClient.request("GET", path, port: broker.port, headers: ["Authorization: Bearer nope"])
                #expect(wrong.status == 401)
            }
            let publish = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=a", port: broker.port, headers: ["Content-Type: application/json"], body: Array("1".utf8))
            #expect(publish.status == 401)
            #expect(try await HTTPTestClient.request("GET", "/api/stats", port: broker.port, headers: ["Authorization: Bearer s3cret"]).status == 200)
            #expect(try await HTTPTestClient.request("GET", "/api/stats", port: broker.port, headers: ["X-API-Key: s3cret"]).status == 200)
            // Probes stay open.
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port).status == 200)
            #expect(try await HTTPTestClient.request("GET", "/readyz", port: broker.port).status == 200)
            // The API key is a credential: WebSocket clients need one too (v1.1), and it is one.
            let refusedUpgrade = try await RawWebSocketClient.connect(port: broker.port, expectUpgrade: false)
            #expect(refusedUpgrade.handshakeResponse.hasPrefix("HTTP/1.1 401"))
            await refusedUpgrade.close()
            let client = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer s3cret"])
            await client.close()
        }
    }

    @Test func clientTokensProtectWebSocketUpgrades() async throws {
        try await TestBroker.with(configure: { $0.clientTokens = ["t1", "t2"]; $0.apiKey = "key" }) { broker in
            let refused = try await RawWebSocketClient.connect(port: broker.port, expectUpgrade: false)
            #expect(refused.handshakeResponse.hasPrefix("HTTP/1.1 401"))
            await refused.close()
            let wrong = try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer t3"], expectUpgrade: false)
            #expect(wrong.handshakeResponse.hasPrefix("HTTP/1.1 401"))
            await wrong.close()
            for accepted in [
                try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer t2"]),
                try await RawWebSocketClient.connect(port: broker.port, path: "/ws?token=t1"),
                try await RawWebSocketClient.connect(port: broker.port, extraHeaders: ["Authorization: Bearer key"]),
            ] {
                guard case .welcome = try await accepted.nextMessage() else {
                    Issue.record("no welcome")
                    continue
                }
                await accepted.close()
            }
        }
    }

    /// The real listener closes a connection that sends half a request (slowloris). When exactly,
    /// and that upgraded connections are left alone, is tested on the loop's clock
    /// (ServerPipelineTests, HTTPRequestHandlerTests); the time limit only stops a hang.
    @Test(.timeLimit(.minutes(patientMinutes(1)))) func idleHTTPConnectionsAreClosed() async throws {
        try await TestBroker.with(configure: { $0.httpIdleTimeout = .seconds(1) }) { broker in
            let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(testConnectTimeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(RawWebSocketClient.Collector(continuation))
                    }
                }
                .connect(host: "127.0.0.1", port: broker.port).get()
            // Half a request, then nothing (slowloris). On a loaded machine the broker may already
            // have closed by the time this is written.
            try? await channel.writeAndFlush(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n"))
            for await _ in stream {}  // until the broker closes the connection
            #expect(!channel.isActive)
        }
    }

    @Test func metricsMoveWithTraffic() async throws {
        try await TestBroker.with(journal: MemoryJournal()) { broker in
            func scrape() async throws -> [String: Double] {
                let response = try await HTTPTestClient.request("GET", "/metrics", port: broker.port)
                #expect(response.status == 200)
                #expect(response.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
                var values: [String: Double] = [:]
                for line in response.body.split(separator: "\n") where !line.hasPrefix("#") {
                    guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
                    values[String(line[..<space])] = value
                }
                return values
            }
            let before = try await scrape()
            #expect(before["broker_connections"] == 0)

            let client = try await subscriber(broker, "m/#")
            for n in 0..<3 {
                try await client.sendText(#"{"op":"publish","topic":"m/\#(n)","data":\#(n),"retain":\#(n == 0)}"#)
                _ = try await client.nextMessage()
            }
            try await client.sendText(#"{"op":"publish","topic":"m/x","data":{"#)  // not JSON
            _ = try await client.nextMessage()
            let after = try await scrape()
            #expect(after["broker_connections"] == 1)
            #expect(after["broker_subscriptions"] == 1)
            #expect(after["broker_connects_total"] == 1)
            #expect(after[#"broker_messages_published_total{kind="text",retained="false"}"#] == 2)
            #expect(after[#"broker_messages_published_total{kind="text",retained="true"}"#] == 1)
            #expect(after[#"broker_messages_delivered_total{kind="text"}"#] == 3)
            #expect((after[#"broker_delivered_bytes_total{kind="text"}"#] ?? 0) > 0)
            #expect(after[#"broker_protocol_errors_total{code="bad_request"}"#] == 1)
            #expect(after["broker_journal_append_seconds_count"] == 1)

            await client.close()
            try await eventually("the reset to be counted", every: .milliseconds(20)) {
                (try await scrape())[#"broker_disconnects_total{reason="reset"}"#] == 1
            }
            let late = try await broker.client()
            try await late.sendText(##"{"op":"subscribe","topic":"m/#","history":5}"##)
            _ = try await late.nextMessage()
            _ = try await late.nextMessage()
            #expect((try await scrape())["broker_messages_replayed_total"] == 1)
            await late.close()
        }
    }
}

/// A journal that refuses appends (500) and, when `stuck`, never answers through its writer
/// (`/readyz` 503); everything else is a MemoryJournal's.
final class BrokenJournal: Journal, @unchecked Sendable {
    let inner = MemoryJournal()
    let stuck: Bool
    init(stuck: Bool) { self.stuck = stuck }
    var epoch: String { inner.epoch }
    private let completionRunEnded = NIOLockedValueBox<(@Sendable () -> Void)?>(nil)
    func append(_ request: any JournalAppendRequest) {
        request.completed(.failure(.failed("disk full")))
        completionRunEnded.withLockedValue { $0 }?()
    }
    func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        completionRunEnded.withLockedValue { $0 = handler }
        inner.onCompletionRunEnded(handler)
    }
    func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        if !stuck { inner.snapshot(completion: completion) }
    }
    func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        inner.replayPage(query, on: eventLoop)
    }
    func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        inner.prunedAfter(offset, filter: filter, on: eventLoop)
    }
    func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> { inner.clear(filter: filter, on: eventLoop) }
    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> { inner.stats(on: eventLoop) }
    func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        inner.retainedTopics(query, on: eventLoop)
    }
    func close() async { await inner.close() }
}

@Suite struct HTTPJournalFailureTests {
    @Test func aFailedAppendIs500() async throws {
        try await TestBroker.with(journal: BrokenJournal(stuck: false)) { broker in
            let response = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=a&retain=true", port: broker.port, headers: ["Content-Type: application/json"],
                body: Array("1".utf8))
            #expect(response.status == 500 && response.errorCode == "internal")
            // A live message does not need the journal.
            let live = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=a", port: broker.port, headers: ["Content-Type: application/json"], body: Array("1".utf8))
            #expect(live.status == 200)
        }
    }

    @Test func aJournalThatDoesNotAnswerIsNotReady() async throws {
        try await TestBroker.with(journal: BrokenJournal(stuck: true)) { broker in
            let response = try await HTTPTestClient.request("GET", "/readyz", port: broker.port)
            #expect(response.status == 503 && response.errorCode == "not_ready")
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port).status == 200)
        }
    }

    /// Whether `buffer` holds a response's head and all of its `Content-Length` body.
    static func holdsWholeResponse(_ buffer: ByteBuffer) -> Bool {
        let text = String(buffer: buffer)
        guard text.contains("\r\n\r\n") else { return false }
        let response = HTTPTestClient.parse(text)
        return response.body.utf8.count >= Int(response.headers["content-length"] ?? "0") ?? 0
    }

    @Test func notReadyWhileDraining() async throws {
        // The drain lasts until the client answers the close (below), or the grace period: long,
        // so that the request below is served during the drain however slow the machine is.
        let broker = try await TestBroker.start(configure: { $0.shutdownGracePeriod = .seconds(120) })
        let client = try await broker.client()
        // An HTTP connection opened before the drain, used after the listener closed.
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(testConnectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawWebSocketClient.Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: broker.port).get()
        // Served once before the drain, so that the broker has surely accepted it: a connection
        // still in the listener's backlog when the listener closes is reset by the kernel (under
        // TSan at load the write below met a closed channel).
        var inbound = stream.makeAsyncIterator()
        try await channel.writeAndFlush(ByteBuffer(string: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"))
        var first = ByteBuffer()
        while !Self.holdsWholeResponse(first), var chunk = await inbound.next() { first.writeBuffer(&chunk) }
        #expect(HTTPTestClient.parse(String(buffer: first)).status == 200)
        let stopping = Task { await broker.stop() }
        #expect(try await client.expectClose() == 1001)
        try await channel.writeAndFlush(ByteBuffer(string: "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        var response = ByteBuffer()
        while var chunk = await inbound.next() { response.writeBuffer(&chunk) }
        #expect(HTTPTestClient.parse(String(buffer: response)).status == 503)
        try await client.send(opcode: 0x8, payload: [0x03, 0xE9])
        await stopping.value
        await client.close()
    }
}
