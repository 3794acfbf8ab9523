import BrokerProtocol
import Foundation
import NIOCore

/// A message delivered to a subscription: the protocol module's `Delivery` (topic, payload —
/// raw JSON text for text messages, opaque bytes for binary ones — `isBinary`, `offset` when
/// retained, `replay`), with the conveniences a client wants.
public typealias BrokerMessage = Delivery

extension BrokerMessage {
    /// The payload bytes.
    public var bytes: [UInt8] { Array(payload.readableBytesView) }

    /// The payload bytes as `Data`.
    public var data: Data { Data(payload.readableBytesView) }

    /// The raw JSON text of a text message (nil for binary).
    public var json: String? { isBinary ? nil : String(buffer: payload) }

    /// The raw JSON of a text message as UTF-8 `Data` (nil for binary), ready for `JSONDecoder`.
    public var jsonData: Data? { isBinary ? nil : data }

    /// The message as a Swift string: for a text message whose data is a JSON string, that string
    /// unescaped; for a binary message, its bytes if they are valid UTF-8. Otherwise nil (use
    /// `json` for other JSON values).
    public var string: String? {
        if isBinary {
            return payload.withUnsafeReadableBytes { UTF8Validator.isValid($0) } ? String(buffer: payload) : nil
        }
        return payload.withUnsafeReadableBytes { bytes -> String? in
            var scanner = JSONScanner(bytes)
            guard let value = try? scanner.scanValue(), value.kind == .string else { return nil }
            return JSONScanner.decodeString(bytes, value.range)
        }
    }

    /// Decodes a text message's JSON data.
    public func decode<T: Decodable>(_ type: T.Type, using decoder: JSONDecoder = JSONDecoder()) throws -> T {
        guard let jsonData else { throw BrokerClientError.invalidJSON("binary message on \(topic) has no JSON data") }
        return try decoder.decode(type, from: jsonData)
    }
}
