import Testing

@testable import BrokerJournalPostgres

/// The `LIKE` prefix that narrows a wildcard filter's topics in PostgreSQL before
/// `Topic.matches` decides: it must never be longer than the filter's literal levels, or
/// topics that match are never looked at.
@Suite struct LikePrefixTests {
    /// The prefix ends without the slash, since `#` also matches its parent level: a little
    /// wider than needed, never narrower.
    @Test(arguments: [
        ("a/b/+", "a/b%"),
        ("a/#", "a%"),
        ("#", "%"),
        ("+/x", "%"),
        ("a_b/100%/+", "a\\_b/100\\%%"),
        // `/` then a combining mark is one Character: a character-wise split saw no level
        // boundary there and took `+/\u{301}x` for one literal level.
        ("+/\u{301}x", "%"),
        ("a/\u{301}/#", "a/\u{301}%"),
    ])
    func prefixStopsAtTheFirstWildcardLevel(filter: String, expected: String) {
        #expect(PostgresQueries.likePrefix(of: filter) == expected)
    }
}
