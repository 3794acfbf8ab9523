import BrokerTestSupport
import Foundation
import NIOCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The `broker` executable with an admin listener (`--admin-port`, `BROKER_ADMIN_*`): the
/// operator routes move there, and a non-loopback admin listener without a key refuses to start.
@Suite(.serialized, .spawnsChildProcesses) struct AdminListenerProcessTests {
    /// A port nothing listens on now (bound to 0, read, released): `admin.port` 0 means "none".
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }

    @Test func operatorRoutesAreServedOnTheAdminPortOnly() async throws {
        let data = temporaryDirectory("broker-admin")
        defer { removeDirectory(data) }
        let adminPort = try await Self.freePort()
        let broker = try ChildProcess(
            "broker", ["serve", "--port", "0", "--data-dir", data, "--admin-port", String(adminPort)],
            environment: ["BROKER_AUTH_API_KEY": "k"])
        let port = try await broker.listeningPort()
        try await eventually("the admin listener; stderr: \(broker.stderr)") { broker.stderr.contains("admin listener ready") }
        let key = ["X-API-Key: k"]
        for path in ["/api/stats", "/api/connections", "/api/topics", "/metrics", "/dashboard"] {
            #expect(try await HTTPTestClient.request("GET", path, port: port, headers: key).status == 404, "\(path)")
            #expect(try await HTTPTestClient.request("GET", path, port: adminPort, headers: key).status == 200, "\(path)")
        }
        for probe in ["/healthz", "/readyz"] {
            #expect(try await HTTPTestClient.request("GET", probe, port: port).status == 200, "\(probe)")
            #expect(try await HTTPTestClient.request("GET", probe, port: adminPort).status == 200, "\(probe)")
        }
        #expect(try await HTTPTestClient.request("GET", "/api/connections", port: adminPort).status == 401)
        let metrics = try await HTTPTestClient.request("GET", "/metrics", port: adminPort, headers: key)
        #expect(metrics.body.contains("# HELP broker_upgrades_refused_total "))
        broker.signal(SIGTERM)
        #expect(try await broker.waitForExit(timeout: .seconds(10)) == 0)
    }

    @Test func aPublicAdminListenerWithoutAKeyRefusesToStart() async throws {
        let data = temporaryDirectory("broker-admin")
        defer { removeDirectory(data) }
        let adminPort = try await Self.freePort()
        // Client tokens are credentials for clients, not for operators.
        let refused = try ChildProcess(
            "broker", ["serve", "--port", "0", "--data-dir", data],
            environment: [
                "BROKER_ADMIN_HOST": "0.0.0.0", "BROKER_ADMIN_PORT": String(adminPort), "BROKER_AUTH_CLIENT_TOKENS": "t",
            ])
        #expect(try await refused.waitForExit(timeout: .seconds(10)) == 78)
        #expect(refused.stderr.contains("admin.host 0.0.0.0"), "\(refused.stderr)")
    }
}
