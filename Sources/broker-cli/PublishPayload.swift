import BrokerProtocol
import NIOCore

/// How `broker-cli publish` turns its DATA into JSON.
enum PublishPayload {
    /// Whether `bytes` are exactly one JSON value.
    static func isJSON(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(raw)
            do throws(JSONScanner.SyntaxError) {
                _ = try scanner.scanValue()
                try scanner.expectEnd()
                return true
            } catch {
                return false
            }
        }
    }

    /// `bytes` if they are JSON, else the text as a JSON string (the command line convenience).
    static func json(from bytes: [UInt8]) -> ByteBuffer {
        if isJSON(bytes) { return ByteBuffer(bytes: bytes) }
        var buffer = ByteBuffer()
        buffer.writeJSONString(String(decoding: bytes, as: UTF8.self))
        return buffer
    }
}
