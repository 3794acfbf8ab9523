import BrokerProtocol
import Foundation
import FuzzSupport
import NIOCore

// Text frames and HTTP publish bodies: `ControlRequest.parseText` (the JSON scanner, the object
// reader, the request fields, topic checks), `PublishBody.validateJSON` and `parseBatch`.
//
// Invariants beyond "does not crash":
// - what a parsed request carries is valid by the protocol's own rules (its topic, its `data`
//   is one JSON value, its `id` is one JSON string or number);
// - whatever Foundation's JSON parser accepts as one value, the strict scanner accepts too, and a
//   top-level string decodes to the same Swift string.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = FuzzInput(data, size)
    let frame = ByteBuffer(bytes: input.bytes)
    let limits = RequestLimits(maxTopicBytes: 64)

    switch ControlRequest.parseText(frame, limits: limits) {
    case .success(let parsed):
        if let id = parsed.id {
            let kind = scanOne(ByteBuffer(string: id.json))
            fuzzCheck(kind == .string || kind == .number, "id \(id.json) is not one JSON string or number")
        }
        switch parsed.request {
        case .publish(let topic, let payload, let isBinary, _):
            fuzzCheck(!isBinary, "a text publish came out binary")
            fuzzCheck((try? ControlRequest.validatePublishTopic(topic, limits: limits, id: nil)) != nil, "invalid topic \(topic) accepted")
            fuzzCheck(scanOne(payload) != nil, "data is not one JSON value: \(String(buffer: payload))")
        case .subscribe(let request):
            fuzzCheck((try? Topic.validateFilter(request.filter, maxBytes: 64)) != nil, "invalid filter accepted")
            fuzzCheck(request.history >= 0, "negative history")
        case .unsubscribe(let filter):
            fuzzCheck((try? Topic.validateFilter(filter, maxBytes: 64)) != nil, "invalid filter accepted")
        case .refresh, .ping:
            break
        }
    case .failure(let error):
        fuzzCheck(!error.message.isEmpty, "an error without a message")
    }

    let strictAccepts = (try? PublishBody.validateJSON(frame)) != nil
    if case .success(let items) = PublishBody.parseBatch(frame, limits: limits, maxItems: 8) {
        fuzzCheck(strictAccepts, "a batch that is not JSON was accepted")
        fuzzCheck(!items.isEmpty && items.count <= 8, "batch size \(items.count) outside 1...8")
        for item in items {
            fuzzCheck(scanOne(item.payload) != nil, "batch data is not one JSON value")
        }
    }

    // Foundation as a second opinion, on input it reads the same way: UTF-8 without a byte
    // order mark or NUL (it would guess another encoding), not nested near either depth limit,
    // and without a comma before `]` or `}` (Foundation accepts that; RFC 8259 does not).
    // U+FEFF anywhere is left out too: Foundation drops a raw one that follows an escape inside
    // a string (`"\\<U+FEFF>\\"` gives two backslashes, RFC 8259 says three characters);
    // found by this target in CI, the scanner was right.
    let comparable = input.bytes.count < 4096 && !hasTrailingComma(input.bytes) && !input.bytes.contains(0)
        && !containsByteOrderMark(input.bytes)
        && input.bytes.filter({ $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "{") }).count < 400
        && UTF8Validator.isValid(input.bytes)
    if comparable, let value = try? JSONSerialization.jsonObject(with: Data(input.bytes), options: [.fragmentsAllowed]) {
        fuzzCheck(strictAccepts, "Foundation accepts JSON that the scanner refuses: \(String(decoding: input.bytes, as: UTF8.self))")
        if let string = value as? String {
            let decoded: String? = frame.withUnsafeReadableBytes { bytes in
                var scanner = JSONScanner(bytes)
                guard let scanned = try? scanner.scanValue(), scanned.kind == .string else { return nil }
                return JSONScanner.decodeString(bytes, scanned.range)
            }
            fuzzCheck(decoded == string, "string decodes to \(String(reflecting: decoded)), Foundation says \(String(reflecting: string))")
        }
    }
    return 0
}

/// Whether the UTF-8 encoding of U+FEFF (EF BB BF) occurs anywhere in `bytes`.
func containsByteOrderMark(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard bytes.count >= 3 else { return false }
    return (0...(bytes.count - 3)).contains { bytes[$0] == 0xEF && bytes[$0 + 1] == 0xBB && bytes[$0 + 2] == 0xBF }
}

/// The kind of the one JSON value `buffer` holds (whitespace around allowed), or nil.
func scanOne(_ buffer: ByteBuffer) -> JSONScanner.Kind? {
    buffer.withUnsafeReadableBytes { bytes in
        var scanner = JSONScanner(bytes)
        guard let value = try? scanner.scanValue(), (try? scanner.expectEnd()) != nil else { return nil }
        return value.kind
    }
}

/// Whether a `,` is followed (after whitespace) by `]` or `}` outside strings.
func hasTrailingComma(_ bytes: UnsafeRawBufferPointer) -> Bool {
    var inString = false, escaped = false, afterComma = false
    for byte in bytes {
        if inString {
            if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            continue
        }
        switch byte {
        case UInt8(ascii: "\""): inString = true; afterComma = false
        case UInt8(ascii: ","): afterComma = true
        case UInt8(ascii: "]"), UInt8(ascii: "}"): if afterComma { return true }
        case 0x20, 0x09, 0x0A, 0x0D: break
        default: afterComma = false
        }
    }
    return false
}
