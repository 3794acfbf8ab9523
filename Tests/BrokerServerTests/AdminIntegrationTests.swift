import BrokerJournal
import BrokerTestSupport
import Foundation
import Testing

@testable import BrokerServer

/// The operator API and the admin listener against the real broker, over sockets.
@Suite struct AdminIntegrationTests {
    func connections(_ port: Int, headers: [String] = []) async throws -> [[String: Any]] {
        let response = try await HTTPTestClient.request("GET", "/api/connections", port: port, headers: headers)
        #expect(response.status == 200, "\(response.body)")
        return response.json?["connections"] as? [[String: Any]] ?? []
    }

    @Test func operatorListsAndDisconnectsClients() async throws {
        try await TestBroker.with(configure: { $0.apiKey = "k" }) { broker in
            let key = ["X-API-Key: k"]
            let watcher = try await broker.client(extraHeaders: ["Authorization: Bearer k"])
            try await watcher.sendText(#"{"op":"subscribe","topic":"dash/#","history":0}"#)
            _ = try await watcher.nextMessage()
            let other = try await broker.client(extraHeaders: ["Authorization: Bearer k"])

            let listed = try await connections(broker.port, headers: key)
            #expect(listed.count == 2)
            let watched = try #require(listed.first { ($0["subscriptions"] as? [String]) == ["dash/#"] })
            #expect((watched["remoteAddress"] as? String)?.hasPrefix("127.0.0.1:") == true)
            let id = try #require(watched["id"] as? String)

            let deleted = try await HTTPTestClient.request("DELETE", "/api/connections/\(id)", port: broker.port, headers: key)
            #expect(deleted.status == 204)
            let close = try await watcher.nextFrame()
            #expect(close.opcode == 0x8 && close.closeCode == 1008)
            #expect(String(decoding: close.payload.dropFirst(2), as: UTF8.self) == "disconnected by operator")
            await watcher.close()
            try await eventually("the operator's disconnect to be counted") {
                let metrics = try await HTTPTestClient.request("GET", "/metrics", port: broker.port, headers: key)
                return metrics.body.contains(#"broker_disconnects_total{reason="operator"} 1"#)
            }
            try await eventually("the connection to be gone") { try await connections(broker.port, headers: key).count == 1 }
            let again = try await HTTPTestClient.request("DELETE", "/api/connections/\(id)", port: broker.port, headers: key)
            #expect(again.status == 404 && again.errorCode == "not_found")
            #expect(try await HTTPTestClient.request("GET", "/api/connections", port: broker.port).status == 401)
            await other.close()
        }
    }

    @Test func topicsListRetainedTopicsWithTheirSubscribers() async throws {
        try await TestBroker.with { broker in
            for topic in ["s/a", "s/a", "s/b"] {
                let published = try await HTTPTestClient.request(
                    "POST", "/api/publish?topic=\(topic)&retain=true", port: broker.port,
                    headers: ["Content-Type: application/json"], body: Array("1".utf8))
                #expect(published.status == 200)
            }
            let client = try await broker.client()
            try await client.sendText(#"{"op":"subscribe","topic":"s/+","history":0}"#)
            _ = try await client.nextMessage()
            let response = try await HTTPTestClient.request("GET", "/api/topics?prefix=s/", port: broker.port)
            #expect(response.status == 200)
            #expect(response.body == """
                {"topics":[{"topic":"s/a","retained":2,"lastOffset":2,"subscriptions":1},\
                {"topic":"s/b","retained":1,"lastOffset":3,"subscriptions":1}],"next":null,\
                "filters":[{"filter":"s/+","subscribers":1}],"filtersTotal":1}

                """)
            await client.close()
        }
    }

    @Test func anAdminListenerTakesTheOperatorRoutes() async throws {
        try await TestBroker.with(configure: { $0.adminPort = 0 }) { broker in
            let adminPort = try #require(broker.server.adminPort)
            #expect(adminPort != broker.port)
            for path in ["/api/stats", "/api/connections", "/api/topics", "/metrics", "/dashboard"] {
                let hidden = try await HTTPTestClient.request("GET", path, port: broker.port)
                #expect(hidden.status == 404 && hidden.errorCode == "not_found", "\(path)")
                #expect(try await HTTPTestClient.request("GET", path, port: adminPort).status == 200, "\(path)")
            }
            for path in ["/healthz", "/readyz", "/api/retained?topic=a"] {
                #expect(try await HTTPTestClient.request("GET", path, port: broker.port).status == 200, "\(path)")
                #expect(try await HTTPTestClient.request("GET", path, port: adminPort).status == 200, "\(path)")
            }
            // The dashboard served by the admin listener talks WebSocket to it too.
            let client = try await RawWebSocketClient.connect(port: adminPort)
            guard case .welcome = try await client.nextMessage() else { throw TestFailure("no welcome on the admin listener") }
            let listed = try await connections(adminPort)
            #expect(listed.count == 1)
            await client.close()
        }
    }
}
