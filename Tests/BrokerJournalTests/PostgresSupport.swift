import BrokerJournal
import BrokerJournalPostgres
import BrokerTestSupport
import Testing

/// The cluster journal's tests need a real PostgreSQL (`PostgresServer`): they run when its
/// `initdb` is installed and are reported as skipped, with this reason, when it is not.
let postgresAvailable = Testing.ConditionTrait.enabled(
    if: PostgresServer.isAvailable, "PostgreSQL (initdb) is not installed, or child processes are off: cluster journal tests skipped")

/// A fresh database on the test process's PostgreSQL server.
func makePostgresDatabase() async throws -> PostgresURL {
    try PostgresURL(try await PostgresServer.shared().makeDatabase())
}

private func makePostgresDatabaseUnlessGiven(_ url: PostgresURL?) async throws -> PostgresURL {
    if let url { return url }
    return try await makePostgresDatabase()
}

/// A cluster journal on `url` (a fresh database unless given).
func openPostgresJournal(
    _ url: PostgresURL? = nil, node: String = "node-a", configuration: JournalConfiguration = JournalConfiguration()
) async throws -> PostgresJournal {
    try await PostgresJournal.open(
        url: try await makePostgresDatabaseUnlessGiven(url), nodeName: node, configuration: configuration,
        feedBufferLimit: PostgresJournal.defaultFeedBufferLimit, openTimeout: patience(.seconds(15)), logger: quietLogger)
}
