import NIOCore

/// What the broker announces in its first frame.
public struct Welcome: Sendable, Equatable {
    public var protocolVersion: Int
    public var server: String
    public var session: String
    public var maxMessageBytes: Int
    public var epoch: String
    /// The connection's token's `sub`, when it has one (v1.1).
    public var client: String?
    /// When the connection's token expires, Unix seconds (v1.1).
    public var exp: Int64?
    /// The broker's name in its cluster (cluster mode only).
    public var node: String?

    public init(
        protocolVersion: Int = 1, server: String, session: String, maxMessageBytes: Int, epoch: String,
        client: String? = nil, exp: Int64? = nil, node: String? = nil
    ) {
        self.node = node
        self.protocolVersion = protocolVersion
        self.server = server
        self.session = session
        self.maxMessageBytes = maxMessageBytes
        self.epoch = epoch
        self.client = client
        self.exp = exp
    }
}

/// Encoders for the broker's JSON replies (the bodies of text frames).
///
/// Each writes one complete JSON object into `buffer`; `WebSocketFrame.encode` wraps it.
public enum ServerMessageEncoder {
    public static func welcome(_ welcome: Welcome, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"welcome","protocol":"#)
        buffer.writeDecimal(UInt64(welcome.protocolVersion))
        buffer.writeStaticString(#","server":"#)
        buffer.writeJSONString(welcome.server)
        buffer.writeStaticString(#","session":"#)
        buffer.writeJSONString(welcome.session)
        buffer.writeStaticString(#","maxMessageBytes":"#)
        buffer.writeDecimal(UInt64(welcome.maxMessageBytes))
        buffer.writeStaticString(#","epoch":"#)
        buffer.writeJSONString(welcome.epoch)
        if let client = welcome.client {
            buffer.writeStaticString(#","client":"#)
            buffer.writeJSONString(client)
        }
        if let exp = welcome.exp {
            buffer.writeStaticString(#","exp":"#)
            buffer.writeString(String(exp))
        }
        if let node = welcome.node {
            buffer.writeStaticString(#","node":"#)
            buffer.writeJSONString(node)
        }
        buffer.writeStaticString("}")
    }

    public static func subscribed(topic: String, id: RequestID?, recovered: Bool?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"subscribed","topic":"#)
        buffer.writeJSONString(topic)
        writeID(id, into: &buffer)
        if let recovered {
            buffer.writeStaticString(recovered ? #","recovered":true"# : #","recovered":false"#)
        }
        buffer.writeStaticString("}")
    }

    /// `reason` when the broker ended the subscription itself (`forbidden`: a refreshed token no
    /// longer covers it).
    public static func unsubscribed(topic: String, id: RequestID?, reason: String? = nil, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"unsubscribed","topic":"#)
        buffer.writeJSONString(topic)
        writeID(id, into: &buffer)
        if let reason {
            buffer.writeStaticString(#","reason":"#)
            buffer.writeJSONString(reason)
        }
        buffer.writeStaticString("}")
    }

    /// The reply to `refresh`: the new token's expiry (Unix seconds) or null.
    public static func refreshed(exp: Int64?, id: RequestID?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"refreshed","exp":"#)
        if let exp { buffer.writeString(String(exp)) } else { buffer.writeStaticString("null") }
        writeID(id, into: &buffer)
        buffer.writeStaticString("}")
    }

    public static func ack(id: RequestID, offset: UInt64?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"ack","id":"#)
        buffer.writeString(id.json)
        if let offset {
            buffer.writeStaticString(#","offset":"#)
            buffer.writeDecimal(offset)
        }
        buffer.writeStaticString("}")
    }

    public static func pong(id: RequestID?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"pong""#)
        writeID(id, into: &buffer)
        buffer.writeStaticString("}")
    }

    public static func error(_ error: RequestError, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(#"{"op":"error","code":"#)
        buffer.writeJSONString(error.code.rawValue)
        buffer.writeStaticString(#","message":"#)
        buffer.writeJSONString(error.message)
        writeID(error.id, into: &buffer)
        buffer.writeStaticString("}")
    }

    /// A `message` carrying `data` (raw JSON text, written verbatim).
    public static func message(
        topic: String, data: ByteBuffer, offset: UInt64?, replay: Bool, into buffer: inout ByteBuffer
    ) {
        buffer.writeStaticString(#"{"op":"message","topic":"#)
        buffer.writeJSONString(topic)
        buffer.writeStaticString(#","data":"#)
        var data = data
        buffer.writeBuffer(&data)
        if let offset {
            buffer.writeStaticString(#","offset":"#)
            buffer.writeDecimal(offset)
        }
        if replay { buffer.writeStaticString(#","replay":true"#) }
        buffer.writeStaticString("}")
    }

    /// A retained `message` up to its offset: `{"op":"message",...,"offset":` (the offset comes
    /// last, so it can be appended once known). `finishMessage` completes it. Returns the writer
    /// index at which `data` starts in `buffer`.
    @discardableResult
    public static func messageAwaitingOffset(topic: String, data: ByteBuffer, into buffer: inout ByteBuffer) -> Int {
        buffer.writeStaticString(#"{"op":"message","topic":"#)
        buffer.writeJSONString(topic)
        buffer.writeStaticString(#","data":"#)
        let dataIndex = buffer.writerIndex
        var data = data
        buffer.writeBuffer(&data)
        buffer.writeStaticString(#","offset":"#)
        return dataIndex
    }

    /// Completes what `messageAwaitingOffset` began.
    public static func finishMessage(offset: UInt64, into buffer: inout ByteBuffer) {
        buffer.writeDecimal(offset)
        buffer.writeStaticString("}")
    }

    static func writeID(_ id: RequestID?, into buffer: inout ByteBuffer) {
        guard let id else { return }
        buffer.writeStaticString(#","id":"#)
        buffer.writeString(id.json)
    }
}

/// A message from the broker as a client sees it (used by the client library and tests).
public enum ServerMessage: Sendable {
    case welcome(Welcome)
    case subscribed(topic: String, id: RequestID?, recovered: Bool?)
    case unsubscribed(topic: String, id: RequestID?)
    /// `payload` is raw JSON text when `isBinary` is false, opaque bytes otherwise.
    case message(Delivery)
    case ack(id: RequestID, offset: UInt64?)
    case pong(id: RequestID?)
    case error(code: String, message: String, id: RequestID?)
    /// The reply to `refresh`: the new token's expiry (Unix seconds), if it has one.
    case refreshed(exp: Int64?, id: RequestID?)
    /// The broker ended a subscription itself (`unsubscribed` with a `reason`, e.g. `forbidden`).
    case subscriptionEnded(topic: String, reason: String)
}

/// A delivered message, text or binary.
public struct Delivery: Sendable, Equatable {
    public var topic: String
    public var payload: ByteBuffer
    public var isBinary: Bool
    public var offset: UInt64?
    public var replay: Bool

    public init(topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64? = nil, replay: Bool = false) {
        self.topic = topic
        self.payload = payload
        self.isBinary = isBinary
        self.offset = offset
        self.replay = replay
    }
}

/// A frame from the broker that the client could not understand.
public struct ServerMessageError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

extension ServerMessage {
    /// Parses a text frame from the broker.
    public static func parseText(_ frame: ByteBuffer) throws(ServerMessageError) -> ServerMessage {
        let result: Result<ServerMessage, ServerMessageError> = frame.withUnsafeReadableBytes { bytes in
            var fields: [String: RawField] = [:]
            do {
                try JSONObjectReader.read(bytes) { key, kind, range in fields[key] = RawField(kind: kind, range: range) }
            } catch {
                return .failure(ServerMessageError(description: "broker sent a frame that is not a JSON object"))
            }
            func string(_ key: String) -> String? {
                guard let field = fields[key], field.kind == .string else { return nil }
                return JSONScanner.decodeString(bytes, field.range)
            }
            func integer(_ key: String) -> UInt64? {
                guard let field = fields[key], field.kind == .number else { return nil }
                return parseUInt64(bytes[field.range])
            }
            func bool(_ key: String) -> Bool? {
                guard let field = fields[key], field.kind == .bool else { return nil }
                return bytes[field.range.lowerBound] == UInt8(ascii: "t")
            }
            func id() -> RequestID? {
                guard let field = fields["id"], field.kind == .string || field.kind == .number else { return nil }
                return RequestID(json: String(decoding: bytes[field.range], as: UTF8.self))
            }
            func missing(_ what: String) -> Result<ServerMessage, ServerMessageError> {
                .failure(ServerMessageError(description: "broker message lacks \(what)"))
            }
            switch string("op") {
            case "welcome":
                // Numbers come from the network: never trap on one that does not fit in an Int.
                guard let protocolVersion = integer("protocol").flatMap({ Int(exactly: $0) }) else {
                    return missing("protocol")
                }
                return .success(.welcome(Welcome(
                    protocolVersion: protocolVersion, server: string("server") ?? "",
                    session: string("session") ?? "", maxMessageBytes: Int(clamping: integer("maxMessageBytes") ?? 0),
                    epoch: string("epoch") ?? "", client: string("client"),
                    exp: integer("exp").flatMap { Int64(exactly: $0) }, node: string("node"))))
            case "subscribed":
                return .success(.subscribed(topic: string("topic") ?? "", id: id(), recovered: bool("recovered")))
            case "unsubscribed":
                if let reason = string("reason") { return .success(.subscriptionEnded(topic: string("topic") ?? "", reason: reason)) }
                return .success(.unsubscribed(topic: string("topic") ?? "", id: id()))
            case "refreshed":
                return .success(.refreshed(exp: integer("exp").flatMap { Int64(exactly: $0) }, id: id()))
            case "message":
                guard let topic = string("topic") else { return missing("topic") }
                guard let data = fields["data"] else { return missing("data") }
                let payload = frame.getSlice(at: frame.readerIndex + data.range.lowerBound, length: data.range.count)!
                return .success(.message(Delivery(
                    topic: topic, payload: payload, isBinary: false, offset: integer("offset"), replay: bool("replay") ?? false)))
            case "ack":
                guard let id = id() else { return missing("id") }
                return .success(.ack(id: id, offset: integer("offset")))
            case "pong":
                return .success(.pong(id: id()))
            case "error":
                return .success(.error(code: string("code") ?? "", message: string("message") ?? "", id: id()))
            case let op?:
                return .failure(ServerMessageError(description: "broker sent an unknown op: \(op)"))
            case nil:
                return missing("op")
            }
        }
        return try result.get()
    }
}
