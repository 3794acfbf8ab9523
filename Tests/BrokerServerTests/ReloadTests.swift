import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import NIOSSL
import Testing

@testable import BrokerServer

/// `BrokerServer.reload`: what SIGHUP puts in force on a running broker, checked on the real
/// listener. (The signal, the settings reading and the log lines: ProcessReloadTests.)
@Suite struct ReloadTests {
    static func upgrade(_ broker: TestBroker, token: String) async throws -> RawWebSocketClient {
        try await RawWebSocketClient.connect(
            port: broker.port, extraHeaders: ["Authorization: Bearer \(token)"], expectUpgrade: false)
    }

    @Test func newTokensAdmitNewConnectionsAndConnectedClientsStay() async throws {
        try await TestBroker.with(configure: { $0.clientTokens = ["alpha"] }) { broker in
            let before = try await Self.upgrade(broker, token: "alpha")
            #expect(before.handshakeResponse.hasPrefix("HTTP/1.1 101"))
            _ = try await before.nextMessage()

            var changed = broker.server.configuration
            changed.clientTokens = ["beta"]
            try await broker.server.reload(changed)

            let old = try await Self.upgrade(broker, token: "alpha")
            #expect(old.handshakeResponse.hasPrefix("HTTP/1.1 401"), "\(old.handshakeResponse)")
            await old.close()
            let new = try await Self.upgrade(broker, token: "beta")
            #expect(new.handshakeResponse.hasPrefix("HTTP/1.1 101"), "\(new.handshakeResponse)")
            await new.close()
            // The client admitted with the old token is still served.
            try await before.sendText(#"{"op":"ping","id":1}"#)
            guard case .pong = try await before.nextMessage() else {
                Issue.record("the connected client was not served after the reload")
                return
            }
            await before.close()
        }
    }

    @Test func limitsApplyToConnectionsMadeAfterTheReload() async throws {
        try await TestBroker.with(configure: { $0.maxSubscriptionsPerConnection = 1 }) { broker in
            let before = try await broker.client()
            var changed = broker.server.configuration
            changed.maxSubscriptionsPerConnection = 2
            changed.maxConnections = 2
            let inForce = try await broker.server.reload(changed)
            #expect(inForce.maxSubscriptionsPerConnection == 2 && inForce.maxConnections == 2)

            let after = try await broker.client()
            for (client, allowed) in [(before, 1), (after, 2)] {
                for (n, topic) in ["a", "b"].enumerated() {
                    try await client.sendText(#"{"op":"subscribe","topic":"\#(topic)","history":0,"id":\#(n)}"#)
                    let answer = try await client.nextMessage()
                    if n < allowed {
                        guard case .subscribed = answer else { Issue.record("\(answer)"); return }
                    } else {
                        guard case .error(let code, _, _) = answer else { Issue.record("\(answer)"); return }
                        #expect(code == "too_many_subscriptions")
                    }
                }
            }
            // The connection cap changed at once: a third connection is refused.
            let third = try await RawWebSocketClient.connect(port: broker.port, expectUpgrade: false)
            #expect(third.handshakeResponse.hasPrefix("HTTP/1.1 503"), "\(third.handshakeResponse)")
            await third.close()
            await before.close()
            await after.close()
        }
    }

    @Test(.spawnsChildProcesses) func newHandshakesGetTheReloadedCertificate() async throws {
        let first = try await TLSTests.Certificate.make()
        let second = try await TLSTests.Certificate.make()
        defer {
            try? FileManager.default.removeItem(at: first.directory)
            try? FileManager.default.removeItem(at: second.directory)
        }
        try await TestBroker.with(configure: {
            $0.tls = .init(certificateChainPath: first.certificatePath, privateKeyPath: first.keyPath)
        }) { broker in
            let trustsFirst = try first.clientContext()
            let trustsSecond = try second.clientContext()
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: trustsFirst).status == 200)
            // The handshake fails: no HTTP answer (the client reports status 0 or throws).
            #expect((try? await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: trustsSecond))?.status != 200)

            var changed = broker.server.configuration
            changed.tls = .init(certificateChainPath: second.certificatePath, privateKeyPath: second.keyPath)
            try await broker.server.reload(changed)
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: trustsSecond).status == 200)
            // The handshake fails: no HTTP answer (the client reports status 0 or throws).
            #expect((try? await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: trustsFirst))?.status != 200)

            // Files that do not load: the reload throws and the certificate in force stays.
            changed.tls = .init(certificateChainPath: "/nonexistent.pem", privateKeyPath: second.keyPath)
            await #expect(throws: (any Error).self) { try await broker.server.reload(changed) }
            #expect(try await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: trustsSecond).status == 200)
        }
    }

    @Test func whatIsReadOnceStaysAsItWas() {
        var old = BrokerConfiguration()
        old.tls = .init(certificateChainPath: "a.pem", privateKeyPath: "a.key")
        var new = old
        new.port = 9999
        new.webSocketPath = "/other"
        new.maxMessageBytes = 7
        new.compressionEnabled = false
        new.shutdownGracePeriod = .seconds(1)
        new.apiKey = "key"
        new.publishRate = 5
        new.tls = .init(certificateChainPath: "b.pem", privateKeyPath: "b.key")
        let merged = old.reloading(from: new)
        #expect(merged.port == old.port && merged.webSocketPath == "/ws" && merged.maxMessageBytes == old.maxMessageBytes)
        #expect(merged.compressionEnabled && merged.shutdownGracePeriod == old.shutdownGracePeriod)
        #expect(merged.apiKey == "key" && merged.publishRate == 5 && merged.tls == new.tls)
    }
}
