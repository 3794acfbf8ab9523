import Atomics
import BrokerJournal
import NIOConcurrencyHelpers
import NIOCore

/// The server's side of the journal writer: what the writer's completions hand to the event
/// loops, staged during a run of completions (one group commit) and posted when the run ends,
/// so a group costs one lock and at most one wakeup per loop instead of several per publish.
///
/// Two kinds of item cross from the writer to a loop, both through the loop's `LoopMailbox`:
/// deliveries (`OutboundMessage`s, for the loop's subscribers) and `JournalCompletion`s (for
/// whoever waits on that loop). Posting has two phases, which keeps order across loops: every
/// loop receives the run's deliveries before any loop receives its completions. Otherwise a
/// publisher whose ack arrived could publish again and, on another loop, overtake the retained
/// message it was acknowledged for.
///
/// Everything here except `post` runs on the journal's completion thread, one call at a time;
/// the lock only guards against a journal that completes a request on the caller's thread
/// (after it closed, or an inline test journal).
final class JournalOutbox: Sendable {
    private struct Staged {
        var deliveries: [LoopMailbox.Item] = []
        var completions: [[LoopMailbox.Item]]
    }

    private let mailboxes: [LoopMailbox]
    private let staged: NIOLockedValueBox<Staged>
    private let metrics: BrokerMetrics
    /// Open connections that negotiated permessage-deflate (the broker's count).
    private let compressingConnections: ManagedAtomic<Int>
    /// Compresses the frames of retained publishes, built here on the writer's thread.
    private let compressor: NIOLockedValueBox<FrameCompressor?>

    init(
        mailboxes: [LoopMailbox], metrics: BrokerMetrics = .disabled,
        compressingConnections: ManagedAtomic<Int> = ManagedAtomic(0), compressor: FrameCompressor? = nil
    ) {
        self.mailboxes = mailboxes
        self.staged = NIOLockedValueBox(Staged(completions: Array(repeating: [], count: mailboxes.count)))
        self.metrics = metrics
        self.compressingConnections = compressingConnections
        self.compressor = NIOLockedValueBox(compressor)
    }

    /// A retained publish is committed (or failed): its frame takes its offset and goes to every
    /// loop, then its completion to the publisher's. Called in offset order.
    func committed(_ publication: RetainedPublication, _ result: Result<UInt64, JournalError>) {
        metrics.journalAppended(after: .now() - publication.started)
        if case .success(let offset) = result {
            let frame = publication.finishFrame(offset: offset)
            deliverEverywhere(makeMessage { compressor in
                OutboundMessage(
                    topic: publication.topic, levels: publication.levels, offset: offset, frame: frame,
                    compressor: compressor, allocator: publication.allocator)
            })
        }
        complete(
            onShard: publication.shardPosition,
            JournalCompletion(publication.waiter, result.map(Optional.some), publication: publication))
    }

    /// A live message that waited behind its publisher's retained ones goes to every loop, then
    /// `completion` to the publisher's.
    func sequenced(_ message: OutboundMessage, then completion: JournalCompletion, onShard shard: Int) {
        deliverEverywhere(message)
        complete(onShard: shard, completion)
    }

    /// A message another broker of the cluster published goes to every loop (called by the
    /// cluster journal on its completion thread, in order with this broker's commits).
    func deliverRemote(_ publication: RemotePublication) {
        let allocator = ByteBufferAllocator()
        deliverEverywhere(makeMessage { compressor in
            OutboundMessage(
                topic: publication.topic, payload: publication.payload, isBinary: publication.isBinary,
                offset: publication.offset, compressor: compressor, allocator: allocator)
        })
    }

    /// Stages `message` for every loop.
    func deliverEverywhere(_ message: OutboundMessage) {
        staged.withLockedValue { $0.deliveries.append(.deliver(message)) }
    }

    /// Stages `completion` for the loop of shard `shard`, after every delivery of this run.
    func complete(onShard shard: Int, _ completion: JournalCompletion) {
        staged.withLockedValue { $0.completions[shard].append(.completed(completion)) }
    }

    /// Posts what the run staged; the journal calls this when a run of completions ends.
    func post() {
        let run = staged.withLockedValue { staged -> Staged in
            let run = staged
            staged.deliveries.removeAll()
            for index in staged.completions.indices { staged.completions[index].removeAll() }
            return run
        }
        for mailbox in mailboxes { mailbox.post(contentsOf: run.deliveries) }
        for (mailbox, items) in zip(mailboxes, run.completions) { mailbox.post(contentsOf: items) }
    }

    /// Adds what the writer's compressor has compressed to `counters`.
    func countCompression(into counters: inout ShardCounters) {
        compressor.withLockedValue { $0?.count(into: &counters) }
    }

    /// Builds a message, compressed when some connection needs it (then under the lock of the
    /// writer's compressor, though only the writer uses it).
    private func makeMessage(_ build: (FrameCompressor?) -> OutboundMessage) -> OutboundMessage {
        guard compressingConnections.load(ordering: .relaxed) > 0 else { return build(nil) }
        return compressor.withLockedValue { build($0) }
    }
}
