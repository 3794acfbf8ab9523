import Testing

@testable import BrokerProtocol

@Suite("permessage-deflate negotiation")
struct PerMessageDeflateTests {
    static let plain = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"

    /// (request header lines, expected response header or nil for no compression)
    static let cases: [([String], String?)] = [
        ([], nil),
        ([""], nil),
        (["permessage-deflate"], plain),
        (["PerMessage-Deflate"], plain),
        (["permessage-deflate; client_max_window_bits"], plain),
        (["permessage-deflate; client_max_window_bits=10"], plain + "; client_max_window_bits=10"),
        (["permessage-deflate; client_max_window_bits=\"10\""], plain + "; client_max_window_bits=10"),
        (["permessage-deflate; client_max_window_bits=8"], plain + "; client_max_window_bits=8"),
        (["permessage-deflate; server_max_window_bits=9"], plain + "; server_max_window_bits=9"),
        (["permessage-deflate; server_max_window_bits=15"], plain + "; server_max_window_bits=15"),
        (["permessage-deflate;server_no_context_takeover;client_no_context_takeover"], plain),
        (["permessage-deflate ; client_no_context_takeover ; server_max_window_bits = 12"], plain + "; server_max_window_bits=12"),
        // A window zlib cannot produce: declined, the next offer is taken.
        (["permessage-deflate; server_max_window_bits=8"], nil),
        (["permessage-deflate; server_max_window_bits=8, permessage-deflate"], plain),
        // Several offers on one line and across lines: the first acceptable one wins.
        (["permessage-deflate; server_max_window_bits=10, permessage-deflate"], plain + "; server_max_window_bits=10"),
        (["x-webkit-deflate-frame", "permessage-deflate; client_max_window_bits=9"], plain + "; client_max_window_bits=9"),
        (["foo; bar=\"a,b\", permessage-deflate; server_max_window_bits=11"], plain + "; server_max_window_bits=11"),
        (["permessage-deflate; unknown_param", "permessage-deflate; server_max_window_bits=13"], plain + "; server_max_window_bits=13"),
        // Bad values, missing values, duplicates, unknown parameters: declined.
        (["permessage-deflate; server_max_window_bits"], nil),
        (["permessage-deflate; server_max_window_bits=16"], nil),
        (["permessage-deflate; server_max_window_bits=7"], nil),
        (["permessage-deflate; server_max_window_bits=010"], nil),
        (["permessage-deflate; server_max_window_bits=+9"], nil),
        (["permessage-deflate; server_max_window_bits=ten"], nil),
        (["permessage-deflate; client_max_window_bits=0"], nil),
        (["permessage-deflate; client_max_window_bits=\"1 0\""], nil),
        (["permessage-deflate; server_no_context_takeover=1"], nil),
        (["permessage-deflate; client_no_context_takeover=\"x\""], nil),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], nil),
        (["permessage-deflate; client_max_window_bits; client_max_window_bits=10"], nil),
        (["permessage-deflate; foo"], nil),
        (["permessage-deflate; foo=bar"], nil),
        // Broken syntax: that element is skipped.
        (["permessage-deflate; client_max_window_bits=\"10"], nil),
        (["permessage-deflate; =10"], nil),
        (["permessage-deflate;;"], nil),
        (["\"permessage-deflate\""], nil),
        ([", , permessage-deflate ,"], plain),
        (["permessage-deflate; a=\"x\"y, permessage-deflate"], plain),
    ]

    @Test("negotiation answers", arguments: cases)
    func negotiation(lines: [String], expected: String?) {
        #expect(PerMessageDeflate.negotiate(headerLines: lines)?.responseHeader == expected)
    }

    @Test func windowsOfTheAgreement() throws {
        let small = try #require(PerMessageDeflate.negotiate(headerLines: ["permessage-deflate; server_max_window_bits=9; client_max_window_bits=11"]))
        #expect(small.serverMaxWindowBits == 9)
        #expect(small.clientMaxWindowBits == 11)
        #expect(small.maxSharedFrameMessageBytes == 512)
        let full = try #require(PerMessageDeflate.negotiate(headerLines: ["permessage-deflate; client_max_window_bits"]))
        #expect(full.serverMaxWindowBits == 15)
        #expect(full.clientMaxWindowBits == 15)
        #expect(full.maxSharedFrameMessageBytes == Int.max)
    }

    @Test func headerElementsKeepParametersAndQuotedValues() {
        let parsed = ExtensionHeader.parse(["a; b=1; c=\"x\\yz\", d", "e;F"])
        #expect(parsed == [
            ExtensionHeader.Element(name: "a", parameters: [("b", "1"), ("c", "xyz")]),
            ExtensionHeader.Element(name: "d"),
            ExtensionHeader.Element(name: "e", parameters: [("f", nil)]),
        ])
        // An escaped quote unescapes to a non-token value: the element is malformed.
        #expect(ExtensionHeader.parse(["a; c=\"x\\\"y\""]) == [nil])
    }
}
