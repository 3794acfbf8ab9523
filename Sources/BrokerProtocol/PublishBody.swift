import NIOCore

/// One message to publish, as the HTTP API receives it (a single body or one element of a batch).
public struct PublishItem: Sendable {
    public var topic: String
    /// Raw JSON text for text messages, opaque bytes for binary ones.
    public var payload: ByteBuffer
    public var isBinary: Bool
    public var retain: Bool

    public init(topic: String, payload: ByteBuffer, isBinary: Bool, retain: Bool) {
        self.topic = topic
        self.payload = payload
        self.isBinary = isBinary
        self.retain = retain
    }
}

/// Validation of HTTP publish bodies with the same rules as the WebSocket control messages:
/// a text message's data is exactly one JSON value in valid UTF-8, a topic is a valid name
/// outside the reserved `$` space.
public enum PublishBody {
    /// Checks that `body` is one JSON value (UTF-8, nothing after it but whitespace).
    public static func validateJSON(_ body: ByteBuffer) throws(RequestError) {
        let error: RequestError? = body.withUnsafeReadableBytes { bytes in
            guard UTF8Validator.isValid(bytes) else { return RequestError(.badRequest, "body is not valid UTF-8") }
            var scanner = JSONScanner(bytes)
            do throws(JSONScanner.SyntaxError) {
                _ = try scanner.scanValue()
                try scanner.expectEnd()
            } catch {
                return RequestError(.badRequest, "body is not JSON: \(error.reason) at byte \(error.offset)")
            }
            return nil
        }
        if let error { throw error }
    }

    /// Parses a batch: a JSON array of objects `{"topic": T, "data": ANY, "retain": BOOL?}`.
    /// Every element is validated before anything is published; an error names the element's
    /// index.
    public static func parseBatch(
        _ body: ByteBuffer, limits: RequestLimits, maxItems: Int
    ) -> Result<[PublishItem], RequestError> {
        body.withUnsafeReadableBytes { bytes in
            Result { () throws(RequestError) -> [PublishItem] in
                guard UTF8Validator.isValid(bytes) else { throw RequestError(.badRequest, "body is not valid UTF-8") }
                var elements: [Range<Int>] = []
                var scanner = JSONScanner(bytes)
                do throws(JSONScanner.SyntaxError) {
                    scanner.skipWhitespace()
                    guard scanner.peek() == UInt8(ascii: "[") else {
                        throw scanner.fail("a batch is a JSON array of {topic, data, retain} objects")
                    }
                    try scanner.expect(UInt8(ascii: "["))
                    if !scanner.consume(UInt8(ascii: "]")) {
                        repeat {
                            let element = try scanner.scanValue(depth: 1)
                            guard element.kind == .object else {
                                throw JSONScanner.SyntaxError(
                                    offset: element.range.lowerBound, reason: "element \(elements.count) is not an object")
                            }
                            elements.append(element.range)
                        } while scanner.consume(UInt8(ascii: ","))
                        try scanner.expect(UInt8(ascii: "]"))
                    }
                    try scanner.expectEnd()
                } catch {
                    throw RequestError(.badRequest, "body is not a batch: \(error.reason) at byte \(error.offset)")
                }
                guard !elements.isEmpty else { throw RequestError(.badRequest, "empty batch") }
                guard elements.count <= maxItems else {
                    throw RequestError(.tooLarge, "at most \(maxItems) messages per batch")
                }
                var items: [PublishItem] = []
                items.reserveCapacity(elements.count)
                for (index, range) in elements.enumerated() {
                    let element = UnsafeRawBufferPointer(rebasing: bytes[range])
                    var fields = RequestFields()
                    do {
                        try JSONObjectReader.read(element) { key, kind, fieldRange in
                            fields.record(key: key, kind: kind, range: fieldRange)
                        }
                    } catch {
                        throw RequestError(.badRequest, "element \(index): not an object")
                    }
                    guard let topicField = fields.topic, topicField.kind == .string else {
                        throw RequestError(.badRequest, "element \(index): topic must be a string")
                    }
                    let topic = JSONScanner.decodeString(element, topicField.range)
                    guard let data = fields.data else { throw RequestError(.badRequest, "element \(index): missing field: data") }
                    var retain = false
                    if let field = fields.retain {
                        guard field.kind == .bool else { throw RequestError(.badRequest, "element \(index): retain must be a boolean") }
                        retain = element[field.range.lowerBound] == UInt8(ascii: "t")
                    }
                    do throws(RequestError) {
                        try ControlRequest.validatePublishTopic(topic, limits: limits, id: nil)
                    } catch {
                        throw RequestError(error.code, "element \(index): \(error.message)")
                    }
                    let payload = body.getSlice(
                        at: body.readerIndex + range.lowerBound + data.range.lowerBound, length: data.range.count)!
                    items.append(PublishItem(topic: topic, payload: payload, isBinary: false, retain: retain))
                }
                return items
            }
        }
    }
}
