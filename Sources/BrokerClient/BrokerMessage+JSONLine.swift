import BrokerProtocol
import Foundation
import NIOCore

extension BrokerMessage {
    /// The message as one line of JSON (without the newline), the output format of
    /// `broker-cli subscribe`:
    ///
    ///     {"topic":"demo/x","data":{"n":1}}
    ///     {"topic":"demo/x","data":{"n":1},"offset":7,"replay":true}
    ///     {"topic":"cam/1","binary":"AAEC"}
    ///
    /// `data` is the published JSON verbatim; `binary` is standard base64 with padding; `offset`
    /// and `replay` appear only when present/true.
    public var jsonLine: String {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(payload.readableBytes + topic.utf8.count + 48)
        buffer.writeStaticString(#"{"topic":"#)
        buffer.writeJSONString(topic)
        if isBinary {
            buffer.writeStaticString(#","binary":""#)
            buffer.writeString(data.base64EncodedString())
            buffer.writeStaticString("\"")
        } else {
            buffer.writeStaticString(#","data":"#)
            var payload = payload
            buffer.writeBuffer(&payload)
        }
        if let offset {
            buffer.writeStaticString(#","offset":"#)
            buffer.writeDecimal(offset)
        }
        if replay { buffer.writeStaticString(#","replay":true"#) }
        buffer.writeStaticString("}")
        return String(buffer: buffer)
    }
}
