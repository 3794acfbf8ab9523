import GRDB
import Testing

@testable import BrokerJournal

/// `durability` reaches the writer's connection, where it decides when a commit is on disk.
@Suite struct DurabilityTests {
    /// GRDB switches the writer to WAL after `prepareDatabase` and sets `synchronous = NORMAL`
    /// as it does, which overrode `durability = full`: a retained publish was acknowledged
    /// before its commit was synced.
    @Test(arguments: [(JournalDurability.full, 2), (JournalDurability.normal, 1)])
    func theWriterSyncsAsAskedFor(durability: JournalDurability, expected: Int) throws {
        let pool = try Schema.openPool(at: makeTemporaryDirectory() + "/journal.sqlite", durability: durability)
        let synchronous = try pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        #expect(synchronous == expected)
    }
}
