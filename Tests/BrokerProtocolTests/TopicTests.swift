import Testing

@testable import BrokerProtocol

@Suite("Topic")
struct TopicTests {
    static let limit = Topic.defaultMaxBytes

    /// (name, expected error or nil when valid)
    static let nameCases: [(String, Topic.ValidationError?)] = [
        ("", .empty),
        ("a", nil),
        ("sensors/kitchen/temp", nil),
        ("a//b", nil),
        ("/", nil),
        ("//", nil),
        ("/a", nil),
        ("a/", nil),
        ("$sys/stats", nil),  // validateName allows `$`; publishing to it is refused elsewhere
        ("café/ü", nil),
        ("with space", nil),
        ("with/tab\t", .containsControlCharacter),
        ("a\u{0}b", .containsNul),
        ("\u{0}", .containsNul),
        ("a+b", .wildcardInName),
        ("+", .wildcardInName),
        ("#", .wildcardInName),
        ("a/+", .wildcardInName),
        ("a/+/b", .wildcardInName),
        ("a/#", .wildcardInName),
        ("a#", .wildcardInName),
        // Length: exactly the limit is fine, one byte more is not, counted in UTF-8 bytes.
        (String(repeating: "a", count: limit), nil),
        (String(repeating: "a", count: limit + 1), .tooLong(limit: limit)),
        (String(repeating: "é", count: limit / 2), nil),  // 128 characters, 256 bytes
        (String(repeating: "é", count: limit / 2) + "a", .tooLong(limit: limit)),  // 129 characters, 257 bytes
        (String(repeating: "€", count: 85) + "a", nil),  // 255 + 1 = 256 bytes
        (String(repeating: "€", count: 86), .tooLong(limit: limit)),  // 258 bytes, 86 characters
        (String(repeating: "😀", count: limit / 4), nil),  // 256 bytes
        (String(repeating: "😀", count: limit / 4) + "/", .tooLong(limit: limit)),  // 257 bytes
        (String(repeating: "a/", count: Topic.defaultMaxLevels - 1) + "a", nil),  // 32 levels
        (String(repeating: "a/", count: Topic.defaultMaxLevels), .tooManyLevels(limit: Topic.defaultMaxLevels)),  // 33
        (String(repeating: "/", count: Topic.defaultMaxLevels - 1), nil),  // 32 empty levels
        (String(repeating: "/", count: Topic.defaultMaxLevels), .tooManyLevels(limit: Topic.defaultMaxLevels)),
        (String(repeating: "a/", count: limit / 2), .tooManyLevels(limit: Topic.defaultMaxLevels)),
        // Control characters: C0 and DEL (log and terminal injection); C1 and other scalars pass.
        ("a\nb", .containsControlCharacter),
        ("a\r", .containsControlCharacter),
        ("\u{1B}[31mred", .containsControlCharacter),
        ("a\u{1}", .containsControlCharacter),
        ("a\u{1F}", .containsControlCharacter),
        ("a\u{7F}", .containsControlCharacter),
        ("a\u{80}é\u{A0}", nil),
        ("a/\u{2028}", nil),
    ]

    @Test("validateName", arguments: nameCases)
    func validateName(name: String, expected: Topic.ValidationError?) {
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName(name) } == expected)
    }

    /// (filter, expected error or nil when valid)
    static let filterCases: [(String, Topic.ValidationError?)] = [
        ("", .empty),
        ("a", nil),
        ("a/b/c", nil),
        ("+", nil),
        ("#", nil),
        ("a/#", nil),
        ("a/+", nil),
        ("+/a", nil),
        ("a/+/b", nil),
        ("+/+", nil),
        ("+/#", nil),
        ("+/+/#", nil),
        ("/#", nil),
        ("/+", nil),
        ("+/", nil),
        ("/+/", nil),
        ("a//b", nil),
        ("a/+//#", nil),
        ("/", nil),
        ("//", nil),
        ("/a", nil),
        ("a/", nil),
        ("$sys/#", nil),
        ("$sys/+/x", nil),
        ("sensors/+/temp", nil),
        ("café/+/ü/#", nil),
        ("a#", .misplacedWildcard),
        ("#a", .misplacedWildcard),
        ("a/#/b", .misplacedWildcard),
        ("#/a", .misplacedWildcard),
        ("#/", .misplacedWildcard),
        ("a/#/", .misplacedWildcard),
        ("##", .misplacedWildcard),
        ("a/b#", .misplacedWildcard),
        ("+a", .misplacedWildcard),
        ("a+", .misplacedWildcard),
        ("a/b+", .misplacedWildcard),
        ("a+/b", .misplacedWildcard),
        ("a/+b/c", .misplacedWildcard),
        ("++", .misplacedWildcard),
        ("+#", .misplacedWildcard),
        ("#+", .misplacedWildcard),
        ("é+", .misplacedWildcard),
        ("+é", .misplacedWildcard),
        ("a\u{0}b", .containsNul),
        ("a/\u{0}/#", .containsNul),
        // A filter obeys the same length limit as a name.
        (String(repeating: "a", count: limit), nil),
        (String(repeating: "a", count: limit + 1), .tooLong(limit: limit)),
        (String(repeating: "a", count: limit - 2) + "/#", nil),
        (String(repeating: "a", count: limit - 1) + "/#", .tooLong(limit: limit)),
        (String(repeating: "é", count: limit / 2), nil),
        (String(repeating: "é", count: limit / 2) + "#", .tooLong(limit: limit)),
        (String(repeating: "😀", count: limit / 4 - 1) + "/+/#", nil),  // 252 + 4 = 256 bytes
        (String(repeating: "😀", count: limit / 4) + "/#", .tooLong(limit: limit)),
        (String(repeating: "+/", count: Topic.defaultMaxLevels - 1) + "#", nil),  // 32 levels
        (String(repeating: "+/", count: Topic.defaultMaxLevels) + "#", .tooManyLevels(limit: Topic.defaultMaxLevels)),
        (String(repeating: "a/", count: Topic.defaultMaxLevels), .tooManyLevels(limit: Topic.defaultMaxLevels)),  // 33: "a/…/a/" ends empty
        ("a/\n/#", .containsControlCharacter),
        ("\u{1B}]0;x\u{7}/+", .containsControlCharacter),
        ("+/\u{7F}", .containsControlCharacter),
        ("a\u{0}", .containsNul),
    ]

    @Test("validateFilter", arguments: filterCases)
    func validateFilter(filter: String, expected: Topic.ValidationError?) {
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter(filter) } == expected)
    }

    @Test("a configured limit applies to names and filters")
    func customLimit() {
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("abcd", maxBytes: 4) } == nil)
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("abcde", maxBytes: 4) }
                == .tooLong(limit: 4))
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("ééé", maxBytes: 5) }
                == .tooLong(limit: 5))
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter("a/#", maxBytes: 3) } == nil)
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter("ab/#", maxBytes: 3) }
                == .tooLong(limit: 3))
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in
                try Topic.validateName(String(repeating: "x", count: 1000), maxBytes: 1000)
            } == nil)
    }

    @Test("a configured level limit applies to names and filters")
    func customLevelLimit() {
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("a/b/c", maxLevels: 3) } == nil)
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("a/b/c/d", maxLevels: 3) }
                == .tooManyLevels(limit: 3))
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter("a/+/#", maxLevels: 3) } == nil)
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter("a/+/b/#", maxLevels: 3) }
                == .tooManyLevels(limit: 3))
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("a", maxLevels: 1) } == nil)
        #expect(
            Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName("a/", maxLevels: 1) }
                == .tooManyLevels(limit: 1))
    }

    /// Every C0 control character and DEL is refused in names and filters, wherever it is.
    @Test("control characters are refused", arguments: Array(1...0x1F) + [0x7F])
    func controlCharacters(scalar: Int) {
        let control = String(UnicodeScalar(UInt8(scalar)))
        for topic in [control, "a" + control, "a/" + control + "/b", control + "/a"] {
            #expect(
                Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName(topic) } == .containsControlCharacter)
            #expect(
                Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateFilter(topic) } == .containsControlCharacter)
        }
    }

    @Test("every error has a description for people")
    func descriptions() {
        let errors: [Topic.ValidationError] = [
            .empty, .tooLong(limit: 7), .containsNul, .containsControlCharacter, .tooManyLevels(limit: 7), .wildcardInName,
            .misplacedWildcard,
        ]
        for error in errors { #expect(!error.description.isEmpty) }
        #expect(Topic.ValidationError.tooLong(limit: 7).description.contains("7"))
    }

    /// A name that went through a bridged or substring path is validated the same way.
    @Test("names built from substrings validate like literals")
    func substringNames() {
        let long = "xx/a+b/yy"
        let middle = String(long.dropFirst(3).dropLast(3))  // "a+b"
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName(middle) } == .wildcardInName)
        let fine = String(long.dropFirst(3).prefix(1))
        #expect(Self.validationResult { () throws(Topic.ValidationError) in try Topic.validateName(fine) } == nil)
    }

    /// (filter, name, matches)
    static let matchCases: [(String, String, Bool)] = [
        ("a/b", "a/b", true),
        ("a/b", "a/c", false),
        ("a/b", "a", false),
        ("a", "a/b", false),
        ("a", "ab", false),
        ("ab", "a", false),
        ("a/b/c", "a/b/c", true),
        ("café", "café", true),
        ("cafe", "café", false),
        // `+`: exactly one level, possibly empty.
        ("+", "a", true),
        ("+", "a/b", false),
        ("+", "/", false),
        ("+/+", "/", true),
        ("+/+", "a/b", true),
        ("+/+", "a", false),
        ("+/+/+", "a/b", false),
        ("a/+", "a/b", true),
        ("a/+", "a/", true),
        ("a/+", "a", false),
        ("a/+", "a/b/c", false),
        ("+/b", "/b", true),
        ("/+", "/a", true),
        ("a/+/c", "a/b/c", true),
        ("a/+/c", "a//c", true),
        ("a/+/c", "a/b/d", false),
        ("a/+/c", "a/b/c/d", false),
        ("sensors/+/temp", "sensors/kitchen/temp", true),
        ("sensors/+/temp", "sensors/kitchen/humidity", false),
        ("é/+", "é/ü", true),
        // `#`: zero or more trailing levels, including the parent.
        ("#", "a", true),
        ("#", "a/b/c", true),
        ("#", "/", true),
        ("#", "//", true),
        ("a/#", "a", true),
        ("a/#", "a/", true),
        ("a/#", "a/b", true),
        ("a/#", "a/b/c", true),
        ("a/#", "ab", false),
        ("a/#", "b", false),
        ("a/#", "b/a", false),
        ("a/b/#", "a/b", true),
        ("a/b/#", "a", false),
        ("a/b/#", "a/c/d", false),
        ("+/#", "a", true),
        ("+/#", "a/b/c", true),
        ("/#", "/a", true),
        ("/#", "a", false),
        ("a/+/#", "a", false),
        ("a/+/#", "a/b", true),
        // Empty levels are real levels.
        ("a//b", "a//b", true),
        ("a//b", "a/b", false),
        ("a/b", "a//b", false),
        ("/a", "/a", true),
        ("/a", "a", false),
        ("a/", "a", false),
        ("a/", "a/", true),
        ("/", "/", true),
        ("//", "/", false),
        // `$` topics are not matched by a filter whose first level is a wildcard.
        ("#", "$sys/x", false),
        ("#", "$sys", false),
        ("+/x", "$sys/x", false),
        ("+", "$sys", false),
        ("+/#", "$sys/x", false),
        ("+/+", "$sys/x", false),
        ("$sys/#", "$sys/x", true),
        ("$sys/#", "$sys", true),
        ("$sys/#", "$sys/a/b", true),
        ("$sys/+", "$sys/x", true),
        ("$sys/x", "$sys/x", true),
        ("$sys/x", "$sys/y", false),
        // `$` elsewhere than the first byte is an ordinary character.
        ("#", "a/$sys", true),
        ("a/+", "a/$x", true),
        ("+/$x", "a/$x", true),
    ]

    @Test("matches(filter:name:)", arguments: matchCases)
    func matches(filter: String, name: String, expected: Bool) throws {
        // The table only contains valid filters and names.
        try Topic.validateFilter(filter)
        try Topic.validateName(name)
        #expect(Topic.matches(filter: filter, name: name) == expected)
    }

    @Test("a name without wildcards used as a filter matches exactly itself")
    func literalFilterMatchesItself() {
        for name in ["a", "a/b", "a//b", "/", "$sys/x", "é/ü/😀", "a/"] {
            #expect(Topic.matches(filter: name, name: name))
        }
    }

    @Test(
        "isWildcard",
        arguments: [
            ("a/b", false), ("", false), ("$sys/x", false), ("+", true), ("#", true), ("a/+/b", true), ("a/#", true),
        ])
    func isWildcard(filter: String, expected: Bool) {
        #expect(Topic.isWildcard(filter) == expected)
    }

    @Test(
        "levels(of:) cuts at every slash, keeps empty levels, and never at a slash inside a character",
        arguments: [
            ("a", ["a"]), ("a/b/c", ["a", "b", "c"]), ("/", ["", ""]), ("a//b", ["a", "", "b"]),
            ("/a/", ["", "a", ""]), ("", [""]), ("sensors/ü/€", ["sensors", "ü", "€"]),
            // A combining mark after a slash: String.split would not cut there (one Character).
            ("a/\u{301}b", ["a", "\u{301}b"]), ("+/#", ["+", "#"]),
        ])
    func levels(topic: String, expected: [String]) {
        let levels = Topic.levels(of: topic)
        #expect(levels.map { Array($0.utf8) } == expected.map { Array($0.utf8) })
        #expect(levels.map(String.init).joined(separator: "/").utf8.elementsEqual(topic.utf8))
    }

    static func validationResult(_ body: () throws(Topic.ValidationError) -> Void) -> Topic.ValidationError? {
        do {
            try body()
            return nil
        } catch {
            return error
        }
    }
}
