import BrokerProtocol
import BrokerTestSupport
import Foundation
import NIOCore
import NIOSSL
import Testing

@testable import BrokerServer

/// https:// and wss:// with a self-signed certificate made for the test (openssl).
@Suite(.spawnsChildProcesses) struct TLSTests {
    struct Certificate {
        let directory: URL
        var certificatePath: String { directory.appendingPathComponent("cert.pem").path }
        var keyPath: String { directory.appendingPathComponent("key.pem").path }

        /// A P-256 self-signed certificate for localhost and 127.0.0.1, as docs/operations.md
        /// tells users to make one; `rsa` makes an RSA 2048 one instead (static-RSA key exchange
        /// needs an RSA certificate).
        static func make(rsa: Bool = false) async throws -> Certificate {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-tls-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let certificate = Certificate(directory: directory)
            let key = rsa ? ["rsa:2048"] : ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
            let result = try await runCommand(["/usr/bin/env", "openssl", "req", "-x509", "-newkey"] + key + [
                "-nodes",
                "-keyout", certificate.keyPath, "-out", certificate.certificatePath, "-days", "2", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ])
            guard result.exitCode == 0 else { throw TLSTestError("openssl failed: \(result.output)") }
            return certificate
        }

        func clientContext(maximumVersion: TLSVersion? = nil) throws -> NIOSSLContext {
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(certificatePath))
            if let maximumVersion {
                configuration.minimumTLSVersion = .tlsv1
                configuration.maximumTLSVersion = maximumVersion
            }
            return try NIOSSLContext(configuration: configuration)
        }
    }

    struct TLSTestError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    @Test func httpsAndWebSocketOverTLS() async throws {
        let certificate = try await Certificate.make()
        defer { try? FileManager.default.removeItem(at: certificate.directory) }
        try await TestBroker.with(configure: {
            $0.tls = .init(certificateChainPath: certificate.certificatePath, privateKeyPath: certificate.keyPath)
        }) { broker in
            let tls = try certificate.clientContext()
            let health = try await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: tls)
            #expect(health.status == 200 && health.body == "ok\n")

            // wss:// pub/sub, and an HTTPS publish that reaches the wss subscriber.
            let subscriber = try await RawWebSocketClient.connect(port: broker.port, tls: tls)
            guard case .welcome = try await subscriber.nextMessage() else {
                Issue.record("no welcome over wss")
                return
            }
            try await subscriber.sendText(##"{"op":"subscribe","topic":"secure/#","id":1}"##)
            guard case .subscribed = try await subscriber.nextMessage() else {
                Issue.record("no subscribed")
                return
            }
            let publisher = try await RawWebSocketClient.connect(port: broker.port, tls: tls)
            _ = try await publisher.nextMessage()
            try await publisher.sendText(#"{"op":"publish","topic":"secure/a","data":{"x":1},"retain":true,"id":7}"#)
            guard case .ack = try await publisher.nextMessage() else {
                Issue.record("no ack")
                return
            }
            guard case .message(let first) = try await subscriber.nextMessage() else {
                Issue.record("no delivery over wss")
                return
            }
            #expect(first.topic == "secure/a" && String(buffer: first.payload) == #"{"x":1}"#)
            let posted = try await HTTPTestClient.request(
                "POST", "/api/publish?topic=secure/b", port: broker.port, headers: ["Content-Type: application/json"],
                body: Array("true".utf8), tls: tls)
            #expect(posted.status == 200)
            guard case .message(let second) = try await subscriber.nextMessage() else {
                Issue.record("no delivery of the https publish")
                return
            }
            #expect(second.topic == "secure/b")
            await publisher.close()
            await subscriber.close()

            // Plain text on the TLS port gets nowhere; TLS 1.1 is refused.
            let plain = try? await HTTPTestClient.request("GET", "/healthz", port: broker.port)
            #expect(plain?.status != 200)
            let old = try? await HTTPTestClient.request("GET", "/healthz", port: broker.port, tls: try certificate.clientContext(maximumVersion: .tlsv11))
            #expect(old?.status != 200)
        }
    }

    /// What `openssl s_client` negotiated with `arguments`: the cipher, or nil when the handshake
    /// failed.
    static func negotiatedCipher(port: Int, _ arguments: [String]) async throws -> String? {
        // stdin is /dev/null: at the end of its input s_client quits after the handshake.
        let result = try await runCommand(["/usr/bin/env", "openssl", "s_client", "-connect", "127.0.0.1:\(port)"] + arguments)
        let text = result.output
        // "New, TLSv1.2, Cipher is ECDHE-RSA-AES128-GCM-SHA256"; "Cipher is (NONE)" when it failed.
        guard result.exitCode == 0,
              let line = text.split(separator: "\n").first(where: { $0.contains("Cipher is ") }),
              let cipher = line.split(separator: " ").last, cipher != "(NONE)"
        else { return nil }
        return String(cipher)
    }

    /// TLS 1.2 is limited to ECDHE key exchange with AEAD ciphers: static RSA (`AES256-SHA`,
    /// `AES128-GCM-SHA256`) and CBC with ECDHE are refused; TLS 1.3 is unchanged.
    @Test func tls12OffersOnlyECDHEWithAEADCiphers() async throws {
        let certificate = try await Certificate.make(rsa: true)
        defer { try? FileManager.default.removeItem(at: certificate.directory) }
        try await TestBroker.with(configure: {
            $0.tls = .init(certificateChainPath: certificate.certificatePath, privateKeyPath: certificate.keyPath)
        }) { broker in
            for refused in ["AES256-SHA", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"] {
                let cipher = try await Self.negotiatedCipher(port: broker.port, ["-tls1_2", "-cipher", refused])
                #expect(cipher == nil, "\(refused) was accepted")
            }
            for accepted in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"] {
                #expect(try await Self.negotiatedCipher(port: broker.port, ["-tls1_2", "-cipher", accepted]) == accepted)
            }
            #expect(try await Self.negotiatedCipher(port: broker.port, ["-tls1_3"])?.hasPrefix("TLS_") == true)
        }
    }

    @Test func unusableCertificateFailsAtStart() async throws {
        let files = BrokerConfiguration.TLSFiles(certificateChainPath: "/nonexistent/cert.pem", privateKeyPath: "/nonexistent/key.pem")
        #expect(throws: (any Error).self) { try BrokerServer.checkTLS(files) }
    }
}
