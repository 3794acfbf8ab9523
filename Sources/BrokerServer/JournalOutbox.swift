import NIOConcurrencyHelpers

/// What journal completions hand to the event loops, staged during a run of completions (one
/// group commit) and posted when the run ends: one lock and at most one wakeup per loop per
/// group, instead of several per retained publish.
///
/// Posting has two phases, which keeps order across loops: every loop receives the run's
/// deliveries before any loop receives its completions (acks, snapshot results). Otherwise a
/// publisher whose ack arrived could publish again and, on another loop, overtake the retained
/// message it was acked for.
///
/// Completions run on the journal's completion thread, one at a time; the lock only guards
/// against a journal that completes a request on the caller's thread (after it closed).
final class JournalOutbox: Sendable {
    private struct Staged {
        var deliveries: [LoopMailbox.Item] = []
        var completions: [[LoopMailbox.Item]]
    }

    private let mailboxes: [LoopMailbox]
    private let staged: NIOLockedValueBox<Staged>

    init(mailboxes: [LoopMailbox]) {
        self.mailboxes = mailboxes
        self.staged = NIOLockedValueBox(Staged(completions: Array(repeating: [], count: mailboxes.count)))
    }

    /// Stages `message` for every loop.
    func deliverEverywhere(_ message: OutboundMessage) {
        staged.withLockedValue { $0.deliveries.append(.deliver(message)) }
    }

    /// Stages `item` for the loop of shard `shard`, after every delivery of this run.
    func complete(onShard shard: Int, _ item: LoopMailbox.Item) {
        staged.withLockedValue { $0.completions[shard].append(item) }
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
}
