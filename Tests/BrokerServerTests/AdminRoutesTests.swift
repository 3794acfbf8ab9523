import BrokerJournal
import Foundation
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import BrokerServer

/// The operator routes on EmbeddedChannels: who may call them, what they answer, which listener
/// serves them, and CORS (docs/http-api.md "Connections", "Topics").
@Suite struct AdminRoutesTests {
    // MARK: Credentials

    @Test func operatorRoutesTakeTheAPIKeyOrAnAdminToken() async throws {
        let harness = try await AdminHarness { $0.apiKey = "k"; $0.jwtSecret = AdminHarness.jwtSecret }
        let admin = try await AdminHarness.token(TokenClaims(sub: "ops", admin: true))
        let client = try await AdminHarness.token(TokenClaims(sub: "alice", subscribe: ["#"]))
        for path in ["/api/connections", "/api/topics", "/api/stats", "/metrics"] {
            #expect(try harness.http().request(.GET, path)?.status == .unauthorized, "\(path)")
            let fresh = try harness.http()  // an unauthorized answer closes its connection
            #expect(try fresh.request(.GET, path, [("X-API-Key", "k")])?.status == .ok, "\(path)")
            #expect(try fresh.request(.GET, path, [("Authorization", "Bearer \(admin)")])?.status == .ok, "\(path)")
            let refused = try fresh.request(.GET, path, [("Authorization", "Bearer \(client)")])
            #expect(refused?.status == .unauthorized && refused?.headers["WWW-Authenticate"].first?.hasPrefix("Bearer") == true, "\(path)")
        }
    }

    @Test func aJWTKeyAloneGuardsTheOperatorRoutes() async throws {
        let harness = try await AdminHarness { $0.jwtSecret = AdminHarness.jwtSecret }
        #expect(try harness.http().request(.GET, "/api/connections")?.status == .unauthorized)
        let admin = try await AdminHarness.token(TokenClaims(sub: "ops", admin: true))
        #expect(try harness.http().request(.GET, "/api/connections?token=\(admin)")?.status == .ok)
    }

    @Test func anOpenBrokerLeavesThemOpen() async throws {
        let harness = try await AdminHarness()
        #expect(try harness.http().request(.GET, "/api/connections")?.status == .ok)
    }

    // MARK: Connections

    @Test func connectionsListEachConnectionWithItsFigures() async throws {
        let harness = try await AdminHarness()
        let identity = Identity(kind: .jwt, client: "alice", permissions: .everything)
        let (channel, connection) = try harness.connect(from: "127.0.0.1", port: 50412, identity: identity)
        try channel.sendClientText(#"{"op":"subscribe","topic":"dash/#","history":0}"#)
        try channel.sendClientText(#"{"op":"subscribe","topic":"alerts/+","history":0}"#)
        try channel.sendClientText(#"{"op":"publish","topic":"dash/cpu","data":42}"#)
        harness.loop.run()
        _ = try harness.connect(from: "::1", port: 6000)

        let response = try #require(try harness.http().request(.GET, "/api/connections"))
        #expect(response.status == .ok && response.headers["Content-Type"] == ["application/json"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(response.body.utf8)) as? [String: Any])
        #expect(json["total"] as? Int == 2)
        let connections = try #require(json["connections"] as? [[String: Any]])
        let first = try #require(connections.first { $0["id"] as? String == connection.sessionID })
        #expect(first["remoteAddress"] as? String == "127.0.0.1:50412")
        #expect(first["client"] as? String == "alice")
        #expect(first["subscriptions"] as? [String] == ["alerts/+", "dash/#"])
        #expect(first["messagesIn"] as? Int == 1 && first["bytesIn"] as? Int == 2)
        #expect(first["messagesOut"] as? Int == 1 && (first["bytesOut"] as? Int ?? 0) > 0)
        #expect(first["queuedBytes"] as? Int == 0)
        let connectedAt = try #require(first["connectedAt"] as? String)
        #expect(connectedAt.hasSuffix("Z") && (try? Date(connectedAt, strategy: .iso8601)) != nil)
        let second = try #require(connections.first { $0["id"] as? String != connection.sessionID })
        #expect(second["remoteAddress"] as? String == "[::1]:6000")
        #expect(second["client"] is NSNull)

        let limited = try #require(try harness.http().request(.GET, "/api/connections?limit=1"))
        #expect(limited.body.hasPrefix(#"{"total":2,"connections":[{"id":"\#(connection.sessionID)""#))
        #expect(try harness.http().request(.GET, "/api/connections?limit=0")?.status == .badRequest)
    }

    @Test func deleteClosesTheConnectionWithAPolicyCode() async throws {
        let harness = try await AdminHarness()
        let (channel, connection) = try harness.connect()
        let deleted = try #require(try harness.http().request(.DELETE, "/api/connections/\(connection.sessionID)"))
        #expect(deleted.status == .noContent && deleted.body.isEmpty)
        let close = try #require(try channel.readServerFrames().last)
        #expect(close.opcode == 0x8)
        var payload = close.payload
        #expect(payload.readInteger(as: UInt16.self) == 1008)
        #expect(String(buffer: payload) == "disconnected by operator")
        // The peer answers the close: the connection ends, counted under its reason.
        channel.close(promise: nil)
        harness.loop.run()
        let operatorIndex = DisconnectReason.allCases.firstIndex(of: .operatorRequest)!
        #expect(harness.broker.shards[0].counters.disconnects[operatorIndex] == 1)

        let unknown = try #require(try harness.http().request(.DELETE, "/api/connections/nobody-1"))
        #expect(unknown.status == .notFound && unknown.body.contains(#""code":"not_found""#))
        let wrongMethod = try #require(try harness.http().request(.GET, "/api/connections/x"))
        #expect(wrongMethod.status == .methodNotAllowed && wrongMethod.headers["Allow"] == ["DELETE"])
    }

    // MARK: Topics

    @Test func topicsCombineTheJournalWithTheLiveSubscriptions() async throws {
        let harness = try await AdminHarness()
        let (publisher, _) = try harness.connect()
        for (topic, value) in [("dash/cpu", 1), ("dash/cpu", 2), ("dash/mem", 3), ("other", 4)] {
            try publisher.sendClientText(#"{"op":"publish","topic":"\#(topic)","data":\#(value),"retain":true}"#)
            harness.loop.run()
        }
        let (subscriber, _) = try harness.connect(port: 2)
        try subscriber.sendClientText(#"{"op":"subscribe","topic":"dash/#","history":0}"#)
        let (other, _) = try harness.connect(port: 3)
        try other.sendClientText(#"{"op":"subscribe","topic":"dash/cpu","history":0}"#)
        try other.sendClientText(#"{"op":"subscribe","topic":"dash/#","history":0}"#)
        harness.loop.run()

        let page = try #require(try harness.http().request(.GET, "/api/topics?prefix=dash/&limit=1"))
        #expect(page.status == .ok)
        #expect(page.body == """
            {"topics":[{"topic":"dash/cpu","retained":2,"lastOffset":2,"subscriptions":3}],"next":"dash/cpu",\
            "filters":[{"filter":"dash/#","subscribers":2}],"filtersTotal":2}

            """)
        let next = try #require(try harness.http().request(.GET, "/api/topics?prefix=dash/&after=dash/cpu"))
        #expect(next.body.hasPrefix(#"{"topics":[{"topic":"dash/mem","retained":1,"lastOffset":3,"subscriptions":2}],"next":null,"#))
        #expect(next.body.contains(#""filters":[{"filter":"dash/#","subscribers":2},{"filter":"dash/cpu","subscribers":1}]"#))
        #expect(try harness.http().request(.GET, "/api/topics?limit=1001")?.status == .badRequest)
    }

    // MARK: Listeners

    @Test func besideAnAdminListenerThePublicOneHidesTheOperatorRoutes() async throws {
        let harness = try await AdminHarness { $0.apiKey = "k" }
        let key = [("X-API-Key", "k")]
        for path in ["/api/stats", "/api/connections", "/api/topics", "/metrics", "/dashboard", "/dashboard/dashboard.js"] {
            let hidden = try #require(try harness.http(role: .publicOnly).request(.GET, path, key))
            #expect(hidden.status == .notFound && hidden.body.contains(#""code":"not_found""#), "\(path)")
            // Without credentials too: the route is not there, rather than refused.
            #expect(try harness.http(role: .publicOnly).request(.GET, path)?.status == .notFound, "\(path)")
            #expect(try harness.http(role: .admin).request(.GET, path, key)?.status == .ok, "\(path)")
        }
        let publicListener = try harness.http(role: .publicOnly)
        for path in ["/healthz", "/readyz", "/api/retained?topic=a"] {
            #expect(try publicListener.request(.GET, path, key)?.status == .ok, "\(path)")
            #expect(try harness.http(role: .admin).request(.GET, path, key)?.status == .ok, "\(path)")
        }
        #expect(try publicListener.request(.DELETE, "/api/connections/x", key)?.status == .notFound)
    }

    // MARK: CORS

    @Test func operatorRoutesFollowTheCORSRule() async throws {
        let harness = try await AdminHarness { $0.allowedOrigins = ["https://dash.example"]; $0.apiKey = "k" }
        let origin = ("Origin", "https://dash.example")
        let preflight = try #require(try harness.http().request(.OPTIONS, "/api/connections/abc", [origin]))
        #expect(preflight.status == .noContent)
        #expect(preflight.headers["Access-Control-Allow-Origin"] == ["https://dash.example"])
        #expect(preflight.headers["Access-Control-Allow-Methods"].first?.contains("DELETE") == true)
        #expect(preflight.headers["Allow"] == ["DELETE, OPTIONS"])
        for path in ["/api/topics", "/api/connections"] {
            let answer = try #require(try harness.http().request(.GET, path, [origin, ("X-API-Key", "k")]))
            #expect(answer.status == .ok && answer.headers["Access-Control-Allow-Origin"] == ["https://dash.example"], "\(path)")
            let foreign = try #require(try harness.http().request(.GET, path, [("Origin", "https://evil.example"), ("X-API-Key", "k")]))
            #expect(foreign.status == .forbidden && foreign.headers["Access-Control-Allow-Origin"].isEmpty, "\(path)")
        }
    }
}
