import Testing

@testable import BrokerProtocol

/// One validation case: the bytes, whether they are valid UTF-8, and for invalid input the index
/// of the byte that proves it (`nil` for input that is only cut short: a valid prefix).
struct UTF8Case: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var valid: Bool
    var failsAt: Int?

    static func valid(_ name: String, _ bytes: [UInt8]) -> UTF8Case {
        UTF8Case(name: name, bytes: bytes, valid: true, failsAt: nil)
    }
    static func invalid(_ name: String, _ bytes: [UInt8], failsAt: Int?) -> UTF8Case {
        UTF8Case(name: name, bytes: bytes, valid: false, failsAt: failsAt)
    }

    var testDescription: String { name }
}

private let kosme: [UInt8] = [0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5]  // "κόσμε"
private let edited = Array("edited".utf8)
private func ascii(_ count: Int) -> [UInt8] { Array(repeating: UInt8(ascii: "a"), count: count) }

/// Reference check: Swift's own RFC 3629 validator.
func referenceIsValid(_ bytes: [UInt8]) -> Bool {
    String(validating: bytes, as: UTF8.self) != nil
}

/// Reference check: whether `bytes` can be extended into valid UTF-8 (appending at most three
/// continuation bytes; only the first continuation of a sequence is ever constrained).
func referenceIsValidPrefix(_ bytes: [UInt8]) -> Bool {
    if referenceIsValid(bytes) { return true }
    for extra in 1...3 {
        for first in UInt8(0x80)...UInt8(0xBF) {
            let completion = [first] + Array(repeating: UInt8(0x80), count: extra - 1)
            if referenceIsValid(bytes + completion) { return true }
        }
    }
    return false
}

@Suite("UTF-8 validation")
struct UTF8ValidatorTests {
    static let cases: [UTF8Case] = [
        .valid("empty", []),
        .valid("ASCII", Array("Hello, world".utf8)),
        .valid("NUL and DEL", [0x00, 0x7F]),
        .valid("κόσμε (Autobahn 6.2)", kosme),
        .valid("U+0080", [0xC2, 0x80]),
        .valid("U+07FF", [0xDF, 0xBF]),
        .valid("U+0800", [0xE0, 0xA0, 0x80]),
        .valid("U+0FFF", [0xE0, 0xBF, 0xBF]),
        .valid("U+1000", [0xE1, 0x80, 0x80]),
        .valid("U+D7FF", [0xED, 0x9F, 0xBF]),
        .valid("U+E000", [0xEE, 0x80, 0x80]),
        .valid("U+FDD0 noncharacter", [0xEF, 0xB7, 0x90]),
        .valid("U+FFFD", [0xEF, 0xBF, 0xBD]),
        .valid("U+FFFE noncharacter", [0xEF, 0xBF, 0xBE]),
        .valid("U+FFFF", [0xEF, 0xBF, 0xBF]),
        .valid("U+10000", [0xF0, 0x90, 0x80, 0x80]),
        .valid("U+1FFFE", [0xF0, 0x9F, 0xBF, 0xBE]),
        .valid("U+3FFFF", [0xF0, 0xBF, 0xBF, 0xBF]),
        .valid("U+40000", [0xF1, 0x80, 0x80, 0x80]),
        .valid("U+FFFFF", [0xF3, 0xBF, 0xBF, 0xBF]),
        .valid("U+100000", [0xF4, 0x80, 0x80, 0x80]),
        .valid("U+10FFFF", [0xF4, 0x8F, 0xBF, 0xBF]),
        .valid("long ASCII runs around multi-byte", ascii(20) + [0xF0, 0x9F, 0x98, 0x80] + ascii(9) + [0xC3, 0xA9] + ascii(17)),
        .valid("mixed", Array("a/é/€/😀 – ok".utf8)),
        // Lone continuation bytes (Autobahn 6.12).
        .invalid("lone 0x80", [0x80], failsAt: 0),
        .invalid("lone 0xBF", [0xBF], failsAt: 0),
        .invalid("80 BF 80", [0x80, 0xBF, 0x80], failsAt: 0),
        .invalid("κόσμε + lone continuation", kosme + [0x80], failsAt: 11),
        // Overlong encodings (Autobahn 6.9, 6.10, 6.17).
        .invalid("overlong NUL C0 80", [0xC0, 0x80], failsAt: 0),
        .invalid("overlong / C0 AF", [0xC0, 0xAF], failsAt: 0),
        .invalid("overlong C1 BF", [0xC1, 0xBF], failsAt: 0),
        .invalid("overlong NUL E0 80 80", [0xE0, 0x80, 0x80], failsAt: 1),
        .invalid("overlong / E0 80 AF", [0xE0, 0x80, 0xAF], failsAt: 1),
        .invalid("overlong U+07FF E0 9F BF", [0xE0, 0x9F, 0xBF], failsAt: 1),
        .invalid("overlong NUL F0 80 80 80", [0xF0, 0x80, 0x80, 0x80], failsAt: 1),
        .invalid("overlong / F0 80 80 AF", [0xF0, 0x80, 0x80, 0xAF], failsAt: 1),
        .invalid("overlong U+FFFF F0 8F BF BF", [0xF0, 0x8F, 0xBF, 0xBF], failsAt: 1),
        // 5- and 6-byte forms (Autobahn 6.8).
        .invalid("5-byte F8 88 80 80 80", [0xF8, 0x88, 0x80, 0x80, 0x80], failsAt: 0),
        .invalid("5-byte overlong F8 87 BF BF BF", [0xF8, 0x87, 0xBF, 0xBF, 0xBF], failsAt: 0),
        .invalid("5-byte FB BF BF BF BF", [0xFB, 0xBF, 0xBF, 0xBF, 0xBF], failsAt: 0),
        .invalid("6-byte FC 84 80 80 80 80", [0xFC, 0x84, 0x80, 0x80, 0x80, 0x80], failsAt: 0),
        .invalid("6-byte overlong FC 83 BF BF BF BF", [0xFC, 0x83, 0xBF, 0xBF, 0xBF, 0xBF], failsAt: 0),
        .invalid("6-byte FD BF BF BF BF BF", [0xFD, 0xBF, 0xBF, 0xBF, 0xBF, 0xBF], failsAt: 0),
        // UTF-16 surrogates (Autobahn 6.18, 6.19).
        .invalid("surrogate U+D800 ED A0 80", [0xED, 0xA0, 0x80], failsAt: 1),
        .invalid("surrogate U+DB7F ED AD BF", [0xED, 0xAD, 0xBF], failsAt: 1),
        .invalid("surrogate U+DB80 ED AE 80", [0xED, 0xAE, 0x80], failsAt: 1),
        .invalid("surrogate U+DBFF ED AF BF", [0xED, 0xAF, 0xBF], failsAt: 1),
        .invalid("surrogate U+DC00 ED B0 80", [0xED, 0xB0, 0x80], failsAt: 1),
        .invalid("surrogate U+DF80 ED BE 80", [0xED, 0xBE, 0x80], failsAt: 1),
        .invalid("surrogate U+DFFF ED BF BF", [0xED, 0xBF, 0xBF], failsAt: 1),
        .invalid("paired surrogates", [0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80], failsAt: 1),
        // Above U+10FFFF.
        .invalid("U+110000 F4 90 80 80", [0xF4, 0x90, 0x80, 0x80], failsAt: 1),
        .invalid("F4 BF BF BF", [0xF4, 0xBF, 0xBF, 0xBF], failsAt: 1),
        .invalid("F5 lead", [0xF5, 0x80, 0x80, 0x80], failsAt: 0),
        .invalid("F7 lead", [0xF7, 0xBF, 0xBF, 0xBF], failsAt: 0),
        // Impossible bytes (Autobahn 6.16).
        .invalid("FE", [0xFE], failsAt: 0),
        .invalid("FF", [0xFF], failsAt: 0),
        .invalid("FE FE FF FF", [0xFE, 0xFE, 0xFF, 0xFF], failsAt: 0),
        // Truncated sequences: a valid prefix, never complete (Autobahn 6.14, 6.6).
        .invalid("truncated 2-byte", [0xC2], failsAt: nil),
        .invalid("truncated 3-byte after 1", [0xE1], failsAt: nil),
        .invalid("truncated 3-byte after 2", [0xE0, 0xA0], failsAt: nil),
        .invalid("truncated 4-byte after 3", [0xF0, 0x90, 0x80], failsAt: nil),
        .invalid("truncated U+10FFFF", [0xF4, 0x8F, 0xBF], failsAt: nil),
        .invalid("κόσμε cut inside ε", Array(kosme.dropLast()), failsAt: nil),
        .invalid("κόσμε cut inside ό", Array(kosme.prefix(4)), failsAt: nil),
        // A lead followed by something other than a continuation (Autobahn 6.13).
        .invalid("C2 then space", [0xC2, 0x20], failsAt: 1),
        .invalid("DF then space", [0xDF, 0x20], failsAt: 1),
        .invalid("E0 then space", [0xE0, 0x20], failsAt: 1),
        .invalid("F0 then space", [0xF0, 0x20], failsAt: 1),
        .invalid("C2 41", [0xC2, 0x41], failsAt: 1),
        .invalid("C2 C2", [0xC2, 0xC2], failsAt: 1),
        .invalid("E1 80 41", [0xE1, 0x80, 0x41], failsAt: 2),
        .invalid("E1 C0 80", [0xE1, 0xC0, 0x80], failsAt: 1),
        .invalid("F1 80 80 41", [0xF1, 0x80, 0x80, 0x41], failsAt: 3),
        // Autobahn 6.3.1 / 6.4.x: valid text, then the bytes that make it invalid.
        .invalid("6.3.1 κόσμε ED A0 80 edited", kosme + [0xED, 0xA0, 0x80] + edited, failsAt: 12),
        .invalid("6.4.1 κόσμε F4 90 80 80 edited", kosme + [0xF4, 0x90, 0x80, 0x80] + edited, failsAt: 12),
        .invalid("6.4.2 κόσμε F4 90 80 80", kosme + [0xF4, 0x90, 0x80, 0x80], failsAt: 12),
        .invalid("6.4.3 κόσμε F4 then edited", kosme + [0xF4] + edited, failsAt: 12),
        // Autobahn 6.15: concatenation of incomplete sequences.
        .invalid(
            "6.15 incomplete sequences",
            [0xC0, 0xE0, 0x80, 0xF0, 0x80, 0x80, 0xF8, 0x88, 0x80, 0x80, 0xDF, 0xEF, 0xBF, 0xF7, 0xBF, 0xBF, 0xFB, 0xBF, 0xBF, 0xBF],
            failsAt: 0),
        .invalid("hello C0 world", Array("hello".utf8) + [0xC0] + Array("world".utf8), failsAt: 5),
        // The bad byte right after ASCII runs of several lengths (the 8-byte fast path).
        .invalid("7 ASCII + 80", ascii(7) + [0x80], failsAt: 7),
        .invalid("8 ASCII + 80", ascii(8) + [0x80], failsAt: 8),
        .invalid("9 ASCII + 80", ascii(9) + [0x80], failsAt: 9),
        .invalid("16 ASCII + FF + a", ascii(16) + [0xFF, 0x61], failsAt: 16),
        .invalid("23 ASCII + C0 80 + 20 ASCII", ascii(23) + [0xC0, 0x80] + ascii(20), failsAt: 23),
        .invalid("ASCII, é, ASCII, surrogate", ascii(10) + [0xC3, 0xA9] + ascii(13) + [0xED, 0xB0, 0x80], failsAt: 26),
    ]

    @Test("one-shot isValid", arguments: cases)
    func oneShot(_ test: UTF8Case) {
        let valid = test.bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
        #expect(valid == test.valid)
        // The table agrees with Swift's own validator.
        #expect(referenceIsValid(test.bytes) == test.valid)
    }

    @Test("incremental, byte by byte: fails exactly at the proving byte", arguments: cases)
    func byteByByte(_ test: UTF8Case) {
        var validator = IncrementalUTF8Validator()
        var failedAt: Int?
        for (index, byte) in test.bytes.enumerated() {
            let accepted = [byte].withUnsafeBytes { validator.feed($0) }
            if !accepted {
                failedAt = index
                break
            }
        }
        #expect(failedAt == test.failsAt)
        let valid = failedAt == nil && validator.isComplete
        #expect(valid == test.valid)
    }

    @Test("incremental, random splits agree with the one-shot result", arguments: cases)
    func randomSplits(_ test: UTF8Case) {
        var rng = SplitMix64(seed: UInt64(test.bytes.count) &* 7919 &+ UInt64(test.name.utf8.count))
        let expected = test.bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
        for _ in 0..<50 {
            #expect(Self.validateInRandomChunks(test.bytes, using: &rng) == expected)
        }
    }

    @Test("isComplete at fragment boundaries")
    func isCompleteAtBoundaries() {
        var validator = IncrementalUTF8Validator()
        #expect(validator.isComplete)
        #expect(feed(&validator, [0x61]))
        #expect(validator.isComplete)
        // "κ" split between two fragments.
        #expect(feed(&validator, [0xCE]))
        #expect(!validator.isComplete)
        #expect(feed(&validator, [0xBA]))
        #expect(validator.isComplete)
        // "😀" split 1 + 2 + 1.
        #expect(feed(&validator, [0xF0]))
        #expect(!validator.isComplete)
        #expect(feed(&validator, [0x9F, 0x98]))
        #expect(!validator.isComplete)
        #expect(feed(&validator, [0x80, 0x61]))
        #expect(validator.isComplete)
        // An empty fragment changes nothing.
        #expect(feed(&validator, [0xE2]))
        #expect(feed(&validator, []))
        #expect(!validator.isComplete)
        #expect(feed(&validator, [0x82, 0xAC]))
        #expect(validator.isComplete)
        // The range narrowing after E0/ED/F0/F4 survives a fragment boundary.
        var afterED = IncrementalUTF8Validator()
        #expect(feed(&afterED, [0xED]))
        #expect(!feed(&afterED, [0xA0]))
        var afterF4 = IncrementalUTF8Validator()
        #expect(feed(&afterF4, [0xF4]))
        #expect(!feed(&afterF4, [0x90]))
        var afterE0 = IncrementalUTF8Validator()
        #expect(feed(&afterE0, [0xE0]))
        #expect(!feed(&afterE0, [0x9F]))
        var afterF0 = IncrementalUTF8Validator()
        #expect(feed(&afterF0, [0xF0]))
        #expect(!feed(&afterF0, [0x8F]))
        // ... and is lifted after the first continuation.
        var lifted = IncrementalUTF8Validator()
        #expect(feed(&lifted, [0xF0, 0x90]))
        #expect(feed(&lifted, [0xBF]))
        #expect(feed(&lifted, [0xBF]))
        #expect(lifted.isComplete)
    }

    @Test("reset starts a new message")
    func reset() {
        var validator = IncrementalUTF8Validator()
        #expect(feed(&validator, [0xE2, 0x82]))
        #expect(!validator.isComplete)
        validator.reset()
        #expect(validator.isComplete)
        #expect(feed(&validator, [0x41]))
        #expect(validator.isComplete)
    }

    @Test("randomized inputs agree with Swift's validator, one-shot, fail-fast and in chunks")
    func randomized() {
        var rng = SplitMix64(seed: 0x5EED)
        let pieces: [[UInt8]] = [
            [0x61], [0x7F], [0x00], Array("hello world!".utf8), [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80],
            [0xF4, 0x8F, 0xBF, 0xBF], [0xED, 0x9F, 0xBF], [0xEE, 0x80, 0x80], [0xE0, 0xA0, 0x80], [0xF0, 0x90, 0x80, 0x80],
        ]
        for _ in 0..<400 {
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 0...12, using: &rng) {
                switch Int.random(in: 0..<10, using: &rng) {
                case 0: bytes.append(UInt8.random(in: 0x80...0xFF, using: &rng))
                case 1: bytes.append(UInt8.random(in: 0...0xFF, using: &rng))
                case 2: bytes.append(contentsOf: pieces.randomElement(using: &rng)!.dropLast())
                default: bytes.append(contentsOf: pieces.randomElement(using: &rng)!)
                }
            }
            let expected = referenceIsValid(bytes)
            let oneShot = bytes.withUnsafeBytes { UTF8Validator.isValid($0) }
            #expect(oneShot == expected, "\(bytes.map { String($0, radix: 16) })")
            #expect(Self.validateInRandomChunks(bytes, using: &rng) == expected, "\(bytes)")

            // Fail fast: the first refused byte is the first one after which no completion exists.
            var validator = IncrementalUTF8Validator()
            var failedAt: Int?
            for index in bytes.indices where !feed(&validator, [bytes[index]]) {
                failedAt = index
                break
            }
            let proof = bytes.indices.first { !referenceIsValidPrefix(Array(bytes[...$0])) }
            #expect(failedAt == proof, "\(bytes.map { String($0, radix: 16) })")
        }
    }

    @Test(
        "sequenceLength",
        arguments: [
            ([0x41], 1), ([0xC2, 0x80], 2), ([0xE0, 0xA0, 0x80], 3), ([0xF0, 0x90, 0x80, 0x80], 4),
            ([0xF4, 0x8F, 0xBF, 0xBF], 4), ([0xED, 0x9F, 0xBF], 3),
            ([0xC2], 0), ([0xE0, 0xA0], 0), ([0xF0, 0x90, 0x80], 0), ([0x80], 0), ([0xC0, 0x80], 0), ([0xC1, 0xBF], 0),
            ([0xE0, 0x80, 0x80], 0), ([0xED, 0xA0, 0x80], 0), ([0xF0, 0x8F, 0xBF, 0xBF], 0), ([0xF4, 0x90, 0x80, 0x80], 0),
            ([0xF5, 0x80, 0x80, 0x80], 0), ([0xFF], 0), ([0xC2, 0x41], 0), ([0xE1, 0x80, 0x41], 0), ([0xF1, 0x80, 0x80, 0x41], 0),
            ([0xC3, 0xA9, 0x41], 2),
        ] as [([UInt8], Int)])
    func sequenceLength(bytes: [UInt8], expected: Int) {
        #expect(bytes.withUnsafeBytes { UTF8Validator.sequenceLength($0, at: 0) } == expected)
        // Same answer when the sequence does not start the buffer.
        let shifted = [UInt8(ascii: "x")] + bytes
        #expect(shifted.withUnsafeBytes { UTF8Validator.sequenceLength($0, at: 1) } == expected)
    }

    static func validateInRandomChunks(_ bytes: [UInt8], using rng: inout SplitMix64) -> Bool {
        var validator = IncrementalUTF8Validator()
        var index = 0
        while index < bytes.count {
            let length = Int.random(in: 0...min(9, bytes.count - index), using: &rng)
            if !feed(&validator, Array(bytes[index..<(index + length)])) { return false }
            index += length
        }
        return validator.isComplete
    }
}

func feed(_ validator: inout IncrementalUTF8Validator, _ bytes: [UInt8]) -> Bool {
    bytes.withUnsafeBytes { validator.feed($0) }
}
