import NIOCore
import Testing

@testable import BrokerJournalPostgres

/// The cluster feed's NOTIFY format: what a writer sends is what a listener rebuilds, chunks
/// under NOTIFY's 8000-byte limit, and nothing malformed is delivered.
@Suite struct FeedNotificationTests {
    private func assemble(_ chunks: [String]) -> (batches: [FeedNotification], dropped: [String]) {
        var assembler = FeedAssembler()
        var batches: [FeedNotification] = []
        var dropped: [String] = []
        for chunk in chunks {
            if let batch = assembler.add(chunk, dropped: { dropped.append($0) }) { batches.append(batch) }
        }
        return (batches, dropped)
    }

    @Test func roundTripsEveryEntryKindInOrder() {
        let batch = FeedNotification(writer: "abc", batch: 7, entries: [
            .retained(offset: 41, topic: "a/b", isBinary: false, payload: ByteBuffer(string: #"{"x":"\n\t "}"#)),
            .live(topic: "ü/ß", isBinary: true, payload: ByteBuffer(bytes: [0, 255, 10, 32])),
            .retained(offset: 42, topic: "big", isBinary: true, payload: nil),
            .live(topic: "empty", isBinary: false, payload: ByteBuffer()),
        ])
        let chunks = batch.encodedChunks()
        #expect(chunks.count == 1)
        let result = assemble(chunks)
        #expect(result.batches == [batch])
        #expect(result.dropped.isEmpty)
    }

    @Test func anEmptyBatchIsOneNotification() {
        let batch = FeedNotification(writer: "w", batch: 1, entries: [])
        #expect(assemble(batch.encodedChunks()).batches == [batch])
    }

    @Test func largeBatchesAreChunkedUnderTheNotifyLimitAndJoinedAgain() {
        let big = ByteBuffer(bytes: (0..<50_000).map { UInt8($0 % 251) })
        let batch = FeedNotification(writer: "w", batch: 3, entries: [
            .live(topic: "t", isBinary: true, payload: big),
            .retained(offset: 9, topic: "t", isBinary: false, payload: ByteBuffer(string: "1")),
        ])
        let chunks = batch.encodedChunks()
        #expect(chunks.count > 8)
        #expect(chunks.allSatisfy { $0.utf8.count < 8_000 })
        #expect(assemble(chunks).batches == [batch])
    }

    @Test func malformedOrIncompleteChunksAreDroppedNotDelivered() {
        let first = FeedNotification(writer: "w", batch: 1, entries: [.live(topic: "t", isBinary: false, payload: ByteBuffer(string: String(repeating: "x", count: 20_000)))])
        let second = FeedNotification(writer: "w", batch: 2, entries: [.live(topic: "t", isBinary: false, payload: ByteBuffer(string: "y"))])
        var chunks = first.encodedChunks()
        chunks.removeLast()  // the batch never completes
        let result = assemble(chunks + ["garbage", "w:x:1/1|L t dA== eQ=="] + second.encodedChunks() + ["w:3:1/1|R1 t !!! eQ=="])
        #expect(result.batches == [second])
        #expect(result.dropped.count == 4)
    }
}

/// `cluster.postgres-url` as libpq reads it.
@Suite struct PostgresURLTests {
    @Test func readsUserPasswordHostPortDatabaseAndSSLMode() throws {
        let url = try PostgresURL("postgres://broker:p%40ss@db.example:6543/brokers?sslmode=require")
        #expect(url.username == "broker" && url.password == "p@ss" && url.database == "brokers" && url.tls == .require)
        guard case .tcp(let host, let port) = url.endpoint else { throw TestFailureMarker() }
        #expect(host == "db.example" && port == 6543)
        #expect(url.description == "postgres://broker@db.example:6543/brokers")  // no password in logs
    }

    @Test func defaultsAndUnixSockets() throws {
        let url = try PostgresURL("postgresql://me@localhost")
        #expect(url.database == "me" && url.password == nil && url.tls == .prefer)
        let socket = try PostgresURL("postgres://me@x/db?host=/run/postgresql")
        guard case .socket(let path) = socket.endpoint else { throw TestFailureMarker() }
        #expect(path == "/run/postgresql/.s.PGSQL.5432")
    }

    @Test func refusesOtherSchemesAndModes() {
        #expect(throws: PostgresURLError.self) { try PostgresURL("mysql://db/x") }
        #expect(throws: PostgresURLError.self) { try PostgresURL("postgres://db/x?sslmode=verify-full") }
        #expect(throws: PostgresURLError.self) { try PostgresURL("postgres:///x") }
    }
}

private struct TestFailureMarker: Error {}
