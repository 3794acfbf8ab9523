import NIOCore

/// The error codes of PROTOCOL.md.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case unknownOp = "unknown_op"
    case invalidTopic = "invalid_topic"
    case forbidden = "forbidden"
    case tooLarge = "too_large"
    case rateLimited = "rate_limited"
    case tooManySubscriptions = "too_many_subscriptions"
    case `internal` = "internal"
    /// A `refresh` whose token is invalid (the old one stays in force).
    case unauthorized = "unauthorized"
    /// The connection's token expired; the broker closes with 1008 `token expired` next.
    case tokenExpired = "token_expired"
}

/// A request `id` exactly as the client wrote it (a JSON string or number), so that every reply
/// carries the same JSON value back: `42` stays `42`, never `42.0` or `"42"`.
public struct RequestID: Sendable, Hashable, CustomStringConvertible {
    /// The JSON text of the id, e.g. `42` or `"a"`.
    public let json: String

    public init(json: String) { self.json = json }
    public init(_ number: UInt32) { self.json = String(number) }
    public init(_ number: Int) { self.json = String(number) }
    public init(string: String) {
        var buffer = ByteBuffer()
        buffer.writeJSONString(string)
        self.json = String(buffer: buffer)
    }

    public var description: String { json }
}

/// A request the broker refused; answered with an `error` message and the connection stays open.
public struct RequestError: Error, Sendable, Equatable {
    public var code: ErrorCode
    public var message: String
    public var id: RequestID?

    public init(_ code: ErrorCode, _ message: String, id: RequestID? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }
}

/// `subscribe` as the client asked for it, validated.
public struct SubscribeRequest: Sendable, Equatable {
    public var filter: String
    /// Newest retained messages to replay per matching topic (default 1: the last value).
    public var history: Int
    /// Replay every retained message after this offset instead; overrides `history`.
    public var since: UInt64?
    /// The journal epoch `since` refers to; ignored without `since`.
    public var epoch: String?

    public init(filter: String, history: Int = 1, since: UInt64? = nil, epoch: String? = nil) {
        self.filter = filter
        self.history = history
        self.since = since
        self.epoch = epoch
    }
}

/// What a client can ask of the broker, from a text (JSON) or binary frame.
public enum ClientRequest: Sendable {
    case subscribe(SubscribeRequest)
    case unsubscribe(filter: String)
    /// `payload` is the raw JSON text of `data` for text publishes, the opaque bytes for binary.
    case publish(topic: String, payload: ByteBuffer, isBinary: Bool, retain: Bool)
    case ping
    /// Replace the connection's token (v1.1 access control).
    case refresh(token: String)
}

/// A parsed request with the id its replies must carry.
public struct ControlRequest: Sendable {
    public var id: RequestID?
    public var request: ClientRequest
}

/// Limits applied while parsing requests.
public struct RequestLimits: Sendable {
    public var maxTopicBytes: Int
    /// Most levels of a topic name or filter (`max-topic-levels`).
    public var maxTopicLevels: Int
    public init(maxTopicBytes: Int = Topic.defaultMaxBytes, maxTopicLevels: Int = Topic.defaultMaxLevels) {
        self.maxTopicBytes = maxTopicBytes
        self.maxTopicLevels = maxTopicLevels
    }
}

extension ControlRequest {
    /// Parses one text frame. Errors carry the request's id when it could be read.
    public static func parseText(_ frame: ByteBuffer, limits: RequestLimits = .init()) -> Result<ControlRequest, RequestError> {
        frame.withUnsafeReadableBytes { bytes in
            Result { () throws(RequestError) -> ControlRequest in
                try parseText(bytes, frame: frame, limits: limits)
            }
        }
    }

    private static func parseText(
        _ bytes: UnsafeRawBufferPointer, frame: ByteBuffer, limits: RequestLimits
    ) throws(RequestError) -> ControlRequest {
        var fields = RequestFields()
        do {
            try JSONObjectReader.read(bytes) { key, kind, range in
                fields.record(key: key, kind: kind, range: range)
            }
        } catch {
            switch error {
            case .notAnObject: throw RequestError(.badRequest, "a control message must be a JSON object")
            case .syntax(let syntax): throw RequestError(.badRequest, "not JSON: \(syntax.reason) at byte \(syntax.offset)")
            }
        }

        var id: RequestID?
        if let field = fields.id {
            switch field.kind {
            case .string, .number:
                id = RequestID(json: String(decoding: bytes[field.range], as: UTF8.self))
            default:
                throw RequestError(.badRequest, "id must be a string or a number")
            }
        }
        func fail(_ code: ErrorCode, _ message: String) -> RequestError { RequestError(code, message, id: id) }

        guard let opField = fields.op else { throw fail(.badRequest, "missing field: op") }
        guard opField.kind == .string else { throw fail(.badRequest, "op must be a string") }
        let op = JSONScanner.decodeString(bytes, opField.range)

        func string(_ field: RawField?, _ name: String) throws(RequestError) -> String {
            guard let field else { throw fail(.badRequest, "missing field: \(name)") }
            guard field.kind == .string else { throw fail(.badRequest, "\(name) must be a string") }
            return JSONScanner.decodeString(bytes, field.range)
        }
        func nonNegativeInteger(_ field: RawField, _ name: String) throws(RequestError) -> UInt64 {
            guard field.kind == .number, let value = parseUInt64(bytes[field.range]) else {
                throw fail(.badRequest, "\(name) must be an integer ≥ 0")
            }
            return value
        }

        switch op {
        case "subscribe":
            let filter = try string(fields.topic, "topic")
            do { try Topic.validateFilter(filter, maxBytes: limits.maxTopicBytes, maxLevels: limits.maxTopicLevels) } catch {
                throw fail(.invalidTopic, "invalid topic filter: \(error)")
            }
            var request = SubscribeRequest(filter: filter)
            if let field = fields.history {
                let history = try nonNegativeInteger(field, "history")
                request.history = Int(clamping: history)
            }
            if let field = fields.since {
                request.since = try nonNegativeInteger(field, "since")
            }
            if let field = fields.epoch {
                guard field.kind == .string else { throw fail(.badRequest, "epoch must be a string") }
                request.epoch = JSONScanner.decodeString(bytes, field.range)
            }
            return ControlRequest(id: id, request: .subscribe(request))

        case "unsubscribe":
            let filter = try string(fields.topic, "topic")
            do { try Topic.validateFilter(filter, maxBytes: limits.maxTopicBytes, maxLevels: limits.maxTopicLevels) } catch {
                throw fail(.invalidTopic, "invalid topic filter: \(error)")
            }
            return ControlRequest(id: id, request: .unsubscribe(filter: filter))

        case "publish":
            let topic = try string(fields.topic, "topic")
            guard let data = fields.data else { throw fail(.badRequest, "missing field: data") }
            var retain = false
            if let field = fields.retain {
                guard field.kind == .bool else { throw fail(.badRequest, "retain must be a boolean") }
                retain = bytes[field.range.lowerBound] == UInt8(ascii: "t")
            }
            try validatePublishTopic(topic, limits: limits, id: id)
            let payload = frame.getSlice(at: frame.readerIndex + data.range.lowerBound, length: data.range.count)!
            return ControlRequest(id: id, request: .publish(topic: topic, payload: payload, isBinary: false, retain: retain))

        case "ping":
            return ControlRequest(id: id, request: .ping)

        case "refresh":
            let token = try string(fields.token, "token")
            return ControlRequest(id: id, request: .refresh(token: token))

        default:
            throw fail(.unknownOp, "unknown op: \(op)")
        }
    }

    /// A publish target must be a valid name outside the broker's reserved `$` space.
    public static func validatePublishTopic(_ topic: String, limits: RequestLimits, id: RequestID?) throws(RequestError) {
        do { try Topic.validateName(topic, maxBytes: limits.maxTopicBytes, maxLevels: limits.maxTopicLevels) } catch {
            throw RequestError(.invalidTopic, "invalid topic: \(error)", id: id)
        }
        if topic.utf8.first == UInt8(ascii: "$") {
            throw RequestError(.forbidden, "topics starting with $ are reserved for the broker", id: id)
        }
    }
}

/// Where one top-level field's value lies in the frame.
struct RawField {
    var kind: JSONScanner.Kind
    var range: Range<Int>
}

/// The fields of a request that the broker reads; unknown fields are ignored (extensions).
struct RequestFields {
    var op, id, topic, data, retain, history, since, epoch, token: RawField?

    mutating func record(key: String, kind: JSONScanner.Kind, range: Range<Int>) {
        let field = RawField(kind: kind, range: range)
        switch key {
        case "op": op = field
        case "id": id = field
        case "topic": topic = field
        case "data": data = field
        case "retain": retain = field
        case "history": history = field
        case "since": since = field
        case "epoch": epoch = field
        case "token": token = field
        default: break
        }
    }
}

/// Reads a JSON document that must be one object and hands each top-level field to a closure.
enum JSONObjectReader {
    enum ReadError: Error {
        case notAnObject
        case syntax(JSONScanner.SyntaxError)
    }

    static func read(
        _ bytes: UnsafeRawBufferPointer,
        field: (String, JSONScanner.Kind, Range<Int>) -> Void
    ) throws(ReadError) {
        var scanner = JSONScanner(bytes)
        scanner.skipWhitespace()
        if scanner.peek() != UInt8(ascii: "{") {
            // Tell "valid JSON but not an object" apart from "not JSON".
            do {
                _ = try scanner.scanValue()
                try scanner.expectEnd()
            } catch {
                throw .syntax(error)
            }
            throw .notAnObject
        }
        do throws(JSONScanner.SyntaxError) {
            try scanner.expect(UInt8(ascii: "{"))
            if !scanner.consume(UInt8(ascii: "}")) {
                repeat {
                    scanner.skipWhitespace()
                    guard scanner.peek() == UInt8(ascii: "\"") else { throw scanner.fail("expected a string key") }
                    let keyStart = scanner.position
                    try scanner.scanString()
                    let key = JSONScanner.decodeString(bytes, keyStart..<scanner.position)
                    try scanner.expect(UInt8(ascii: ":"))
                    let value = try scanner.scanValue(depth: 1)
                    field(key, value.kind, value.range)
                } while scanner.consume(UInt8(ascii: ","))
                try scanner.expect(UInt8(ascii: "}"))
            }
            try scanner.expectEnd()
        } catch {
            throw .syntax(error)
        }
    }
}

/// Parses a JSON number that is a plain non-negative integer literal fitting in 64 bits.
func parseUInt64(_ digits: Slice<UnsafeRawBufferPointer>) -> UInt64? {
    guard !digits.isEmpty else { return nil }
    var value: UInt64 = 0
    for byte in digits {
        guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
        let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
        let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
        if overflow1 || overflow2 { return nil }
        value = sum
    }
    return value
}
