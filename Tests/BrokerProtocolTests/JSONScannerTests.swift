import Foundation
import Testing

@testable import BrokerProtocol

@Suite("JSONScanner")
struct JSONScannerTests {
    /// Scans one complete JSON document; returns the top-level kind or the syntax error.
    static func scan(_ text: String) -> Result<JSONScanner.Kind, JSONScanner.SyntaxError> {
        scan(bytes: Array(text.utf8))
    }

    static func scan(bytes: [UInt8]) -> Result<JSONScanner.Kind, JSONScanner.SyntaxError> {
        bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(raw)
            do throws(JSONScanner.SyntaxError) {
                let value = try scanner.scanValue()
                try scanner.expectEnd()
                return .success(value.kind)
            } catch {
                return .failure(error)
            }
        }
    }

    static let validDocuments: [(String, JSONScanner.Kind)] = [
        ("{}", .object), ("[]", .array), ("\"\"", .string), ("0", .number), ("-0", .number), ("true", .bool),
        ("false", .bool), ("null", .null),
        (" \t\r\n{ \"a\" : [ 1 , 2.5 , -3e10 , 4E+2 , 5e-1 , 0.0 ] , \"b\" : { } }\n", .object),
        ("[[[[[]]]]]", .array), ("[{}, [], \"\", 0, true, false, null]", .array),
        ("123456789012345678901234567890", .number), ("-1.5E-300", .number), ("1e400", .number),
        ("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\uD83D\\uDE00\\u00e9\\u00E9\"", .string),
        ("\"κόσμε 😀\"", .string), ("\"\u{7F}\"", .string), ("\"\\ud800\"", .string),
        ("{\"\":\"\"}", .object), ("{\"a\":1,\"a\":2}", .object),
    ]

    @Test("valid documents", arguments: validDocuments)
    func valid(text: String, kind: JSONScanner.Kind) throws {
        #expect(try Self.scan(text).get() == kind)
        // Foundation agrees that these are JSON (it refuses lone surrogates and out-of-range
        // numbers, which RFC 8259 allows).
        guard !text.contains("\\ud800") && text != "1e400" else { return }
        #expect(throws: Never.self) {
            try JSONSerialization.jsonObject(with: Data(text.utf8), options: [.fragmentsAllowed])
        }
    }

    static let invalidDocuments: [String] = [
        "", " ", "garbage", "{", "}", "[", "]", "{]", "[}", "[1,]", "[,1]", "[1 2]", "{\"a\":1,}", "{,}", "{\"a\"}", "{\"a\":}",
        "{\"a\" 1}", "{a:1}", "{'a':1}", "['a']", "{\"a\":1}x", "{} {}", "[] []", "1 2", "01", "-01", "00", "1.", "-",
        "-.5", ".5", "+1", "1e", "1e+", "1E-", "0x10", "NaN", "Infinity", "-Infinity", "tru", "True", "nul", "NULL",
        "falsey", "\"abc", "\"abc\\\"", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"\\'\"", "\"a\tb\"",
        "\"a\nb\"", "\"\u{1F}\"", "\"\u{0}\"", "// c\n{}", "/* c */ {}", "{\"a\":1 /* c */}", "[1]]", "{\"a\":1}}", "\u{0}",
        "{}\u{0}",
    ]

    @Test("invalid documents", arguments: invalidDocuments)
    func invalid(text: String) {
        guard case .failure(let error) = Self.scan(text) else {
            Issue.record("accepted \(text.debugDescription)")
            return
        }
        #expect(error.offset >= 0 && error.offset <= text.utf8.count)
        #expect(!error.reason.isEmpty)
    }

    @Test(
        "invalid UTF-8 inside strings",
        arguments: [
            [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], [0x22, 0x80, 0x22],
            [0x22, 0xC3, 0x22], [0x22, 0xE2, 0x82, 0x22], [0x22, 0xFF, 0x22], [0x22, 0x61, 0xC3],
        ] as [[UInt8]])
    func invalidUTF8InString(bytes: [UInt8]) {
        guard case .failure = Self.scan(bytes: bytes) else {
            Issue.record("accepted \(bytes)")
            return
        }
    }

    @Test("a value's range excludes surrounding whitespace")
    func ranges() throws {
        let text = "  [ 1 , \"x\" ]  "
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(raw)
            let value = try scanner.scanValue()
            #expect(value.kind == .array)
            #expect(value.range == 2..<13)
            try scanner.expectEnd()
            #expect(scanner.position == bytes.count)
        }
    }

    @Test("nesting up to maxDepth is accepted, deeper is refused without recursion blowing up")
    func depth() {
        let max = JSONScanner.maxDepth
        let arrays = { (depth: Int) in String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }
        let objects = { (depth: Int) in
            String(repeating: "{\"a\":", count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        }
        #expect((try? Self.scan(arrays(max)).get()) == .array)
        #expect((try? Self.scan(objects(max)).get()) == .object)
        guard case .failure = Self.scan(arrays(max + 1)) else {
            Issue.record("accepted \(max + 1) nested arrays")
            return
        }
        guard case .failure = Self.scan(objects(max + 1)) else {
            Issue.record("accepted \(max + 1) nested objects")
            return
        }
        guard case .failure = Self.scan(arrays(200_000)) else {
            Issue.record("accepted 200000 nested arrays")
            return
        }
        guard case .failure = Self.scan(String(repeating: "[", count: 200_000)) else {
            Issue.record("accepted 200000 unclosed arrays")
            return
        }
    }

    /// (literal, decoded)
    static let decodedStrings: [(String, String)] = [
        ("\"\"", ""),
        ("\"abc\"", "abc"),
        ("\"a\\/b\"", "a/b"),
        ("\"a\\\\b\"", "a\\b"),
        ("\"\\\"q\\\"\"", "\"q\""),
        ("\"\\b\\f\\n\\r\\t\"", "\u{8}\u{C}\n\r\t"),
        ("\"caf\\u00e9\"", "café"),
        ("\"caf\\u00E9\"", "café"),
        ("\"\\u0041\\u0062\"", "Ab"),
        ("\"\\u0000\"", "\u{0}"),
        ("\"\\u20ac\"", "€"),
        ("\"\\ud83d\\ude00\"", "😀"),
        ("\"\\uD83D\\uDE00!\"", "😀!"),
        ("\"x\\ud83d\\ude00y\"", "x😀y"),
        ("\"κόσμε\\n😀\"", "κόσμε\n😀"),
        ("\"é\\u00e9é\"", "ééé"),
        // A lone surrogate cannot be a Swift scalar: it becomes U+FFFD.
        ("\"\\ud800\"", "\u{FFFD}"),
        ("\"\\udc00x\"", "\u{FFFD}x"),
        ("\"\\ud83d\\u0041\"", "\u{FFFD}A"),
        ("\"\\ud83d\\\\u0041\"", "\u{FFFD}\\u0041"),
    ]

    @Test("decodeString", arguments: decodedStrings)
    func decodeString(literal: String, expected: String) throws {
        let bytes = Array(("  " + literal + "  ").utf8)
        try bytes.withUnsafeBytes { raw in
            var scanner = JSONScanner(raw)
            let value = try scanner.scanValue()
            #expect(value.kind == .string)
            #expect(JSONScanner.decodeString(raw, value.range) == expected)
        }
        // Foundation decodes valid ones the same way.
        if !expected.unicodeScalars.contains("\u{FFFD}") {
            let decoded = try JSONSerialization.jsonObject(with: Data(literal.utf8), options: [.fragmentsAllowed]) as? String
            #expect(decoded == expected)
        }
    }
}
