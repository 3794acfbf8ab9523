import BrokerJournal
import BrokerTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import BrokerServer

/// The plain HTTP routes on the broker's listener.
@Suite struct HTTPIntegrationTests {
    /// Sends one HTTP/1.1 request with `Connection: close` and returns the whole response.
    func http(_ method: String, _ target: String, port: Int) async throws -> (status: Int, body: String) {
        let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connectTimeout(testConnectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RawWebSocketClient.Collector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        let request = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        try await channel.writeAndFlush(ByteBuffer(string: request))
        var response = ""
        for await var chunk in stream { response += chunk.readString(length: chunk.readableBytes) ?? "" }
        let status = Int(response.split(separator: " ").dropFirst().first ?? "") ?? 0
        let body = response.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
        return (status, body)
    }

    @Test func healthStatsAndErrors() async throws {
        try await TestBroker.with { broker in
            #expect(try await http("GET", "/healthz", port: broker.port) == (200, "ok\n"))
            let stats = try await http("GET", "/api/stats", port: broker.port)
            #expect(stats.status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(stats.body.utf8)) as? [String: Any]
            #expect(json?["connections"] as? Int == 0)
            #expect((json?["journal"] as? [String: Any])?["epoch"] as? String == broker.journal.epoch)
            #expect(try await http("POST", "/api/stats", port: broker.port).status == 405)
            #expect(try await http("GET", "/nowhere", port: broker.port).status == 404)
            #expect(try await http("GET", "/ws", port: broker.port).status == 426)
            let missing = try await http("DELETE", "/api/retained", port: broker.port)
            #expect(missing.status == 400 && missing.body.contains("bad_request"))
            #expect(try await http("DELETE", "/api/retained?topic=a/%23/b", port: broker.port).status == 400)
        }
    }

    @Test func clearingRetainedMessagesOverHTTP() async throws {
        try await TestBroker.with { broker in
            let publisher = try await broker.client()
            for (n, topic) in ["s/a", "s/b", "t/a"].enumerated() {
                try await publisher.sendText(#"{"op":"publish","topic":"\#(topic)","data":\#(n),"retain":true,"id":\#(n)}"#)
                _ = try await publisher.nextMessage()
            }
            let cleared = try await http("DELETE", "/api/retained?topic=s/%2B", port: broker.port)
            #expect(cleared.status == 200 && cleared.body.contains(#""cleared":2"#))

            try await publisher.sendText(##"{"op":"subscribe","topic":"#","since":0}"##)
            guard case .subscribed(_, _, let recovered) = try await publisher.nextMessage() else {
                Issue.record("no subscribed reply")
                return
            }
            #expect(recovered == false)  // s/a and s/b lost messages after offset 0
            guard case .message(let delivery) = try await publisher.nextMessage() else {
                Issue.record("no replay")
                return
            }
            #expect(delivery.topic == "t/a")
            await publisher.close()
        }
    }
}
