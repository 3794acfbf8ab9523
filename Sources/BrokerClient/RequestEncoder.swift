import BrokerProtocol
import NIOCore

/// Encodes the client's requests (PROTOCOL.md, client → broker) into frame bodies.
enum RequestEncoder {
    /// `{"op":"subscribe","id":N,"topic":F,"history":H[,"since":S[,"epoch":E]]}`
    static func subscribe(id: UInt32, _ request: SubscribeRequest) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"op":"subscribe","id":"#)
        buffer.writeDecimal(UInt64(id))
        buffer.writeStaticString(#","topic":"#)
        buffer.writeJSONString(request.filter)
        buffer.writeStaticString(#","history":"#)
        buffer.writeDecimal(UInt64(max(0, request.history)))
        if let since = request.since {
            buffer.writeStaticString(#","since":"#)
            buffer.writeDecimal(since)
            if let epoch = request.epoch, !epoch.isEmpty {
                buffer.writeStaticString(#","epoch":"#)
                buffer.writeJSONString(epoch)
            }
        }
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"op":"unsubscribe","id":N,"topic":F}`
    static func unsubscribe(id: UInt32, filter: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"op":"unsubscribe","id":"#)
        buffer.writeDecimal(UInt64(id))
        buffer.writeStaticString(#","topic":"#)
        buffer.writeJSONString(filter)
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"op":"publish","id":N,"topic":T,"data":<json>[,"retain":true]}`; `json` is written verbatim.
    static func publish(id: UInt32, topic: String, json: ByteBuffer, retain: Bool) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(json.readableBytes + topic.utf8.count + 64)
        buffer.writeStaticString(#"{"op":"publish","id":"#)
        buffer.writeDecimal(UInt64(id))
        buffer.writeStaticString(#","topic":"#)
        buffer.writeJSONString(topic)
        buffer.writeStaticString(#","data":"#)
        var json = json
        buffer.writeBuffer(&json)
        if retain { buffer.writeStaticString(#","retain":true"#) }
        buffer.writeStaticString("}")
        return buffer
    }

    /// A binary publish with the ack bit and `id`.
    static func binaryPublish(id: UInt32, topic: String, payload: ByteBuffer, retain: Bool) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(payload.readableBytes + topic.utf8.count + 8)
        BinaryCodec.encodePublish(topic: topic, payload: payload, retain: retain, ackID: id, into: &buffer)
        return buffer
    }

    /// `{"op":"ping"}`: the keep-alive's, whose `pong` (without an id) nobody waits for.
    static var keepAlivePing: ByteBuffer { ByteBuffer(string: #"{"op":"ping"}"#) }

    /// `{"op":"ping","id":N}`
    static func ping(id: UInt32) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"op":"ping","id":"#)
        buffer.writeDecimal(UInt64(id))
        buffer.writeStaticString("}")
        return buffer
    }

    /// `{"op":"refresh","token":T,"id":N}`
    static func refresh(id: UInt32, token: String) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString(#"{"op":"refresh","token":"#)
        buffer.writeJSONString(token)
        buffer.writeStaticString(#","id":"#)
        buffer.writeDecimal(UInt64(id))
        buffer.writeStaticString("}")
        return buffer
    }

    /// Checks that `json` is exactly one JSON value (surrounding whitespace allowed).
    static func validateJSON(_ json: ByteBuffer) throws(BrokerClientError) {
        let result: String? = json.withUnsafeReadableBytes { bytes -> String? in
            var scanner = JSONScanner(bytes)
            do throws(JSONScanner.SyntaxError) {
                scanner.skipWhitespace()
                _ = try scanner.scanValue()
                try scanner.expectEnd()
                return nil
            } catch {
                return "\(error.reason) at byte \(error.offset)"
            }
        }
        if let result { throw .invalidJSON(result) }
    }
}
