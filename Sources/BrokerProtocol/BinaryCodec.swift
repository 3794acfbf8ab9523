import NIOCore

/// The binary frame layouts of PROTOCOL.md (all integers big-endian).
public enum BinaryCodec {
    public static let publishKind: UInt8 = 0x01
    public static let messageKind: UInt8 = 0x02

    /// Publish flags: bit 0 retain, bit 1 ack requested.
    public static let retainFlag: UInt8 = 0x01
    public static let ackFlag: UInt8 = 0x02
    /// Message flags: bit 0 offset present, bit 1 replay.
    public static let offsetFlag: UInt8 = 0x01
    public static let replayFlag: UInt8 = 0x02

    /// Decodes a client's binary publish. The payload is a slice of `frame` (no copy).
    public static func decodePublish(_ frame: ByteBuffer, limits: RequestLimits = .init()) -> Result<ControlRequest, RequestError> {
        var buffer = frame
        guard let kind = buffer.readInteger(as: UInt8.self), let flags = buffer.readInteger(as: UInt8.self),
            let topicLength = buffer.readInteger(as: UInt16.self)
        else {
            return .failure(RequestError(.badRequest, "binary frame too short"))
        }
        guard kind == publishKind else {
            return .failure(RequestError(.badRequest, "unknown binary frame kind 0x\(String(kind, radix: 16))"))
        }
        guard let topicBytes = buffer.readSlice(length: Int(topicLength)) else {
            return .failure(RequestError(.badRequest, "topic length runs past the end of the frame"))
        }
        var id: RequestID?
        if flags & ackFlag != 0 {
            guard let number = buffer.readInteger(as: UInt32.self) else {
                return .failure(RequestError(.badRequest, "binary frame too short for its request id"))
            }
            id = RequestID(number)
        }
        let valid = topicBytes.withUnsafeReadableBytes { UTF8Validator.isValid($0) }
        guard valid else { return .failure(RequestError(.invalidTopic, "topic is not valid UTF-8", id: id)) }
        let topic = String(buffer: topicBytes)
        do {
            try ControlRequest.validatePublishTopic(topic, limits: limits, id: id)
        } catch {
            return .failure(error)
        }
        let retain = flags & retainFlag != 0
        return .success(ControlRequest(id: id, request: .publish(topic: topic, payload: buffer, isBinary: true, retain: retain)))
    }

    /// Writes a binary `message` body (kind 0x02).
    public static func encodeMessage(
        topic: String, payload: ByteBuffer, offset: UInt64?, replay: Bool, into buffer: inout ByteBuffer
    ) {
        var flags: UInt8 = 0
        if offset != nil { flags |= offsetFlag }
        if replay { flags |= replayFlag }
        buffer.writeInteger(messageKind)
        buffer.writeInteger(flags)
        buffer.writeInteger(UInt16(truncatingIfNeeded: topic.utf8.count))
        buffer.writeString(topic)
        if let offset { buffer.writeInteger(offset) }
        var payload = payload
        buffer.writeBuffer(&payload)
    }

    /// Writes a retained binary `message` body with a zero offset and returns where the offset
    /// is, for `setOffset` once it is known.
    public static func encodeMessageAwaitingOffset(topic: String, payload: ByteBuffer, into buffer: inout ByteBuffer) -> Int {
        buffer.writeInteger(messageKind)
        buffer.writeInteger(offsetFlag)
        buffer.writeInteger(UInt16(truncatingIfNeeded: topic.utf8.count))
        buffer.writeString(topic)
        let offsetIndex = buffer.writerIndex
        buffer.writeInteger(UInt64(0))
        var payload = payload
        buffer.writeBuffer(&payload)
        return offsetIndex
    }

    /// Writes a binary publish body (kind 0x01), as a client sends it.
    public static func encodePublish(
        topic: String, payload: ByteBuffer, retain: Bool, ackID: UInt32?, into buffer: inout ByteBuffer
    ) {
        var flags: UInt8 = 0
        if retain { flags |= retainFlag }
        if ackID != nil { flags |= ackFlag }
        buffer.writeInteger(publishKind)
        buffer.writeInteger(flags)
        buffer.writeInteger(UInt16(truncatingIfNeeded: topic.utf8.count))
        buffer.writeString(topic)
        if let ackID { buffer.writeInteger(ackID) }
        var payload = payload
        buffer.writeBuffer(&payload)
    }

    /// Decodes a broker's binary `message`, as a client receives it.
    public static func decodeMessage(_ frame: ByteBuffer) throws(ServerMessageError) -> Delivery {
        var buffer = frame
        guard buffer.readInteger(as: UInt8.self) == messageKind else {
            throw ServerMessageError(description: "binary frame is not a message (kind 0x02)")
        }
        guard let flags = buffer.readInteger(as: UInt8.self), let length = buffer.readInteger(as: UInt16.self),
            let topic = buffer.readString(length: Int(length))
        else { throw ServerMessageError(description: "binary message too short") }
        var offset: UInt64?
        if flags & offsetFlag != 0 {
            guard let value = buffer.readInteger(as: UInt64.self) else {
                throw ServerMessageError(description: "binary message too short for its offset")
            }
            offset = value
        }
        return Delivery(topic: topic, payload: buffer, isBinary: true, offset: offset, replay: flags & replayFlag != 0)
    }
}
