import NIOCore
import NIOHTTP1
import Testing

@testable import BrokerServer

/// The HTTP API refuses the topics PROTOCOL.md refuses (too many levels, control characters)
/// with 400 `invalid_topic`, like the WebSocket side.
extension HTTPRequestHandlerTests {
    @Test func anInvalidTopicIs400InvalidTopic() throws {
        let deep = String(repeating: "a/", count: 32) + "a"
        for (method, uri) in [
            (HTTPMethod.GET, "/api/retained?topic=\(deep)"), (.DELETE, "/api/retained?topic=a%0Ab"), (.POST, "/api/publish?topic=a%1B%5B2J"),
            (.POST, "/api/publish?topic=\(deep)"),
        ] {
            let harness = try Harness()
            try harness.head(method, uri, method == .POST ? [("Content-Length", "1"), ("Content-Type", "application/json")] : [])
            if method == .POST { try harness.body("1") }
            try harness.end()
            let response = try #require(try harness.response())
            #expect(response.status == .badRequest, "\(method) \(uri)")
            #expect(response.body.contains(#""code":"invalid_topic""#), "\(method) \(uri)")
        }
    }

    @Test func aBatchWithAnInvalidTopicIs400InvalidTopic() throws {
        let harness = try Harness()
        let batch = #"[{"topic":"a\nb","data":1}]"#
        try harness.head(.POST, "/api/publish", [("Content-Length", "\(batch.utf8.count)"), ("Content-Type", "application/json")])
        try harness.body(batch)
        try harness.end()
        let response = try #require(try harness.response())
        #expect(response.status == .badRequest)
        #expect(response.body.contains(#""code":"invalid_topic""#))
    }
}
