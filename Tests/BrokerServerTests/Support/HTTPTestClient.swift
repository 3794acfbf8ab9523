import Foundation
import NIOCore
import NIOPosix
import NIOSSL

/// One HTTP/1.1 exchange over a fresh connection (`Connection: close`), written by hand so tests
/// control every byte (declared lengths, chunked bodies, missing headers).
struct HTTPResponse {
    var status: Int
    var headers: [String: String]
    var body: String

    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] }
    var errorCode: String? { (json?["error"] as? [String: Any])?["code"] as? String }
}

enum HTTPTestClient {
    static func request(
        _ method: String, _ target: String, port: Int, headers: [String] = [], body: [UInt8]? = nil,
        chunked: Bool = false, tls: NIOSSLContext? = nil, host: String = "127.0.0.1"
    ) async throws -> HTTPResponse {
        let (channel, stream) = try await RawWebSocketClient.openCollecting(port: port, tls: tls)
        var request = "\(method) \(target) HTTP/1.1\r\nHost: \(host)\r\nConnection: close\r\n"
        for header in headers { request += header + "\r\n" }
        var out = ByteBuffer()
        if let body {
            if chunked {
                request += "Transfer-Encoding: chunked\r\n\r\n"
                out.writeString(request)
                var offset = 0
                while offset < body.count {
                    let chunk = body[offset..<min(offset + 65_536, body.count)]
                    out.writeString(String(chunk.count, radix: 16) + "\r\n")
                    out.writeBytes(chunk)
                    out.writeString("\r\n")
                    offset += chunk.count
                }
                out.writeString("0\r\n\r\n")
            } else {
                request += "Content-Length: \(body.count)\r\n\r\n"
                out.writeString(request)
                out.writeBytes(body)
            }
        } else {
            out.writeString(request + "\r\n")
        }
        // The server may answer (413) and close before it has read everything.
        try? await channel.writeAndFlush(out)
        var response = ByteBuffer()
        for await var chunk in stream { response.writeBuffer(&chunk) }
        return parse(String(buffer: response))
    }

    static func parse(_ text: String) -> HTTPResponse {
        let parts = text.components(separatedBy: "\r\n\r\n")
        let headLines = (parts.first ?? "").components(separatedBy: "\r\n")
        let status = Int(headLines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in headLines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return HTTPResponse(status: status, headers: headers, body: parts.dropFirst().joined(separator: "\r\n\r\n"))
    }
}
