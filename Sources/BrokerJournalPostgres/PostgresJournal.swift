import BrokerJournal
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PostgresNIO

/// The cluster journal: every broker started with the same `cluster.postgres-url` shares this
/// journal, its offsets and its epoch (docs/cluster.md).
///
/// - Appends, snapshots, broadcasts and clears go through one `PostgresWriter` task (group
///   commits: one transaction and a constant number of round trips per group).
/// - `ClusterFeed` listens for every broker's commits (its own included) and runs completions and
///   remote deliveries serially, in commit order, which is offset order.
/// - Reads run on the pool's connections and complete on the event loop given.
/// - Database I/O runs on an event loop group of its own, never on the broker's loops.
///
/// Call `close()` before dropping the journal.
public final class PostgresJournal: ClusterJournal, @unchecked Sendable {
    public let epoch: String
    public let nodeName: String

    let client: PostgresClient
    private let group: MultiThreadedEventLoopGroup
    private let clientTask: Task<Void, Never>
    private let writer: PostgresWriter
    private let feed: ClusterFeed
    private let logger: Logger
    private let closed = NIOLockedValueBox(false)

    private init(
        epoch: String, nodeName: String, client: PostgresClient, group: MultiThreadedEventLoopGroup,
        clientTask: Task<Void, Never>, writer: PostgresWriter, feed: ClusterFeed, logger: Logger
    ) {
        self.epoch = epoch
        self.nodeName = nodeName
        self.client = client
        self.group = group
        self.clientTask = clientTask
        self.writer = writer
        self.feed = feed
        self.logger = logger
    }

    /// Connects, migrates the schema (creating the journal and its epoch on first use) and
    /// starts the writer and the feed. Throws `.unusable` with a one-line reason when the
    /// database cannot be reached or used.
    public static func open(
        url: PostgresURL, nodeName: String, configuration: JournalConfiguration = JournalConfiguration(),
        logger: Logger
    ) async throws(JournalError) -> PostgresJournal {
        try await open(url: url, nodeName: nodeName, configuration: configuration, feedBufferLimit: defaultFeedBufferLimit, logger: logger)
    }

    /// Notifications that may wait for the feed by default.
    package static let defaultFeedBufferLimit = ClusterFeed.defaultMaxBuffered

    /// `open`, with the number of notifications that may wait for the feed before it drops its
    /// connection and catches up from the journal (tests make it tiny), and how long migrating
    /// and starting to listen may each take (sanitizer runs stretch it).
    package static func open(
        url: PostgresURL, nodeName: String, configuration: JournalConfiguration, feedBufferLimit: Int,
        openTimeout: Duration = .seconds(15), logger: Logger
    ) async throws(JournalError) -> PostgresJournal {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        var clientConfiguration = url.clientConfiguration
        clientConfiguration.options.maximumConnections = 4
        clientConfiguration.options.minimumConnections = 1
        clientConfiguration.options.connectionIdleTimeout = .seconds(60)
        let quiet = { var quiet = logger; quiet.logLevel = max(logger.logLevel, .notice); return quiet }()
        let client = PostgresClient(configuration: clientConfiguration, eventLoopGroup: group, backgroundLogger: quiet)
        let clientTask = Task { await client.run() }
        let epoch: String
        do {
            epoch = try await withTimeout(openTimeout) { try await PostgresSchema.migrate(client, logger: quiet) }
        } catch {
            clientTask.cancel()
            await clientTask.value
            try? await group.shutdownGracefully()
            if let error = error as? JournalError { throw error }
            throw .unusable("cannot use the cluster journal at \(url): \(describe(error))")
        }
        let instance = makeJournalEpoch()
        let batches = OwnBatches()
        let feed = ClusterFeed(
            url: url, client: client, eventLoop: group.next(), instance: instance, batches: batches,
            maxBuffered: feedBufferLimit, logger: logger)
        let writer = PostgresWriter(
            client: client, instance: instance, batches: batches, feed: feed, configuration: configuration, logger: logger)
        let journal = PostgresJournal(
            epoch: epoch, nodeName: nodeName, client: client, group: group, clientTask: clientTask, writer: writer,
            feed: feed, logger: logger)
        feed.start()
        writer.start()
        do {
            try await withTimeout(openTimeout) { await feed.waitUntilListening() }
        } catch {
            await journal.close()
            throw .unusable("cannot listen on the cluster journal at \(url): \(describe(error))")
        }
        logger.info("cluster journal open", metadata: [
            "url": "\(url)", "epoch": "\(epoch)", "node": "\(nodeName)", "instance": "\(instance)",
        ])
        return journal
    }

    public func append(_ request: any JournalAppendRequest) {
        writer.submit(.append(request))
    }

    public func snapshot(completion: @escaping @Sendable (UInt64) -> Void) {
        writer.submit(.snapshot(completion))
    }

    public func broadcast(_ entry: JournalEntry) {
        writer.submit(.broadcast(entry))
    }

    public func onCompletionRunEnded(_ handler: @escaping @Sendable () -> Void) {
        feed.onRunEnded(handler)
        writer.onRunEnded(handler)
    }

    public func onRemotePublication(_ handler: @escaping @Sendable (RemotePublication) -> Void) {
        feed.onRemotePublication(handler)
    }

    public var isConnected: Bool { feed.isListening && writer.isHealthy }

    public func replayPage(_ query: ReplayQuery, on eventLoop: any EventLoop) -> EventLoopFuture<ReplayPage> {
        read(on: eventLoop) { client in try await PostgresQueries.replayPage(query, client) }
    }

    public func prunedAfter(_ offset: UInt64, filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        read(on: eventLoop) { client in try await PostgresQueries.prunedAfter(offset, filter: filter, client) }
    }

    public func clear(filter: String, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        writer.submit(.clear(filter, { promise.completeWith($0.mapError { $0 as any Error }) }))
        return promise.futureResult
    }

    public func retainedTopics(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<RetainedTopicsPage> {
        read(on: eventLoop) { client in try await PostgresQueries.retainedTopics(query, client) }
    }

    public func stats(on eventLoop: any EventLoop) -> EventLoopFuture<JournalStats> {
        read(on: eventLoop) { client in try await PostgresQueries.stats(client) }
    }

    /// Applies retention now, behind every request submitted before (see SQLiteJournal's).
    package func applyRetention() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            writer.submit(.applyRetention { done.resume() })
        }
    }

    /// The highest offset the feed has delivered or completed (for tests and metrics).
    package var followedOffset: UInt64 { feed.followedOffset }

    /// How many times the feed reconnected and caught up from the journal.
    package var feedCatchUps: Int { feed.catchUps }

    /// How many times the feed fell behind and dropped its connection to catch up instead.
    package var feedOverflows: Int { feed.overflows }

    /// Holds the feed's processing (not its listening) until `releaseFeed()`: for tests of a
    /// broker that falls behind the cluster.
    package func holdFeed() { feed.holdProcessing() }
    package func releaseFeed() { feed.releaseProcessing() }

    public func close() async {
        let first = closed.withLockedValue { closed -> Bool in
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        await writer.stop()
        await feed.stop()
        clientTask.cancel()
        await clientTask.value
        try? await group.shutdownGracefully()
        logger.info("cluster journal closed")
    }

    /// How long a read may wait for PostgreSQL (the writer's transactions have the same bound).
    static let readTimeout: Duration = .seconds(10)

    private func read<T: Sendable>(
        on eventLoop: any EventLoop, _ body: @escaping @Sendable (PostgresClient) async throws -> T
    ) -> EventLoopFuture<T> {
        guard !closed.withLockedValue({ $0 }) else { return eventLoop.makeFailedFuture(JournalError.closed) }
        let promise = eventLoop.makePromise(of: T.self)
        let client = self.client
        Task {
            do {
                // Bounded: while PostgreSQL is unreachable a query waits for a connection that is
                // not coming, and whoever waits for the read (a replay, /api/stats, the metrics
                // collector that a SIGTERM waits for) would wait as long.
                promise.succeed(try await withTimeout(Self.readTimeout) { try await body(client) })
            } catch is TimedOut {
                promise.fail(JournalError.failed("PostgreSQL did not answer within \(Self.readTimeout)"))
            } catch let error as JournalError {
                promise.fail(error)
            } catch {
                promise.fail(JournalError.failed(describe(error)))
            }
        }
        return promise.futureResult
    }
}

/// One line for people out of a postgres-nio error (its `description` hides the server's message).
func describe(_ error: any Error) -> String {
    if let error = error as? PSQLError {
        if let message = error.serverInfo?[.message] { return message }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }
    if let error = error as? PostgresTransactionError {
        if let inner = error.closureError ?? error.commitError ?? error.beginError { return describe(inner) }
    }
    return "\(error)"
}

struct TimedOut: Error, CustomStringConvertible {
    var description: String { "timed out" }
}

/// Who of `withTimeout`'s body and timer finished first: the caller's continuation until then.
private struct TimeoutRace<T: Sendable> {
    var continuation: CheckedContinuation<T, any Error>?
    var work: Task<Void, Never>?
    var timer: Task<Void, Never>?
}

/// Runs `body`, throwing `TimedOut` once it has taken `timeout`. Returns then even if `body`
/// does not stop when cancelled: a task group would wait for it, and postgres-nio's wait for a
/// pooled connection while PostgreSQL is down did not always end on cancellation (a journal's
/// close waited over two minutes at load 15). `body` is cancelled and left to end on its own; a
/// cancellation of the caller cancels it too.
func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = NIOLockedValueBox(TimeoutRace<T>())
    /// The first outcome resumes the caller; the loser is cancelled.
    @Sendable func finish(_ result: Result<T, any Error>) {
        let (continuation, work, timer) = race.withLockedValue { race in
            defer { race = TimeoutRace() }
            return (race.continuation, race.work, race.timer)
        }
        timer?.cancel()
        work?.cancel()
        continuation?.resume(with: result)
    }
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.withLockedValue { $0.continuation = continuation }
            let work = Task {
                do { finish(.success(try await body())) } catch { finish(.failure(error)) }
            }
            let timer = Task {
                guard (try? await Task.sleep(for: timeout)) != nil else { return }
                finish(.failure(TimedOut()))
            }
            let finished = race.withLockedValue { race -> Bool in
                guard race.continuation != nil else { return true }
                race.work = work
                race.timer = timer
                return false
            }
            if finished {
                work.cancel()
                timer.cancel()
            }
        }
    } onCancel: {
        finish(.failure(CancellationError()))
    }
}
