import BrokerJournal
import BrokerProtocol
import NIOConcurrencyHelpers
import NIOCore

/// Work for one event loop posted from other threads (the journal writer, other event loops),
/// batched: a post that finds the mailbox non-empty only appends, so one event-loop task carries
/// everything a group commit or a read burst produced instead of one task per message.
///
/// Items run in the order posted. A post can join a drain task that was enqueued earlier, so it
/// may overtake tasks enqueued on the loop in between: cross-loop work whose order matters must
/// all go through the mailbox.
final class LoopMailbox: Sendable {
    /// The two things that cross to a loop: a message for its subscribers, and the answer to a
    /// request that went through the journal writer.
    enum Item: Sendable {
        case deliver(OutboundMessage)
        case completed(JournalCompletion)
    }

    private struct State {
        var items: [Item] = []
        var spare: [Item] = []
        var drainScheduled = false

        /// Whether the caller must schedule a drain task (none is pending yet).
        mutating func scheduleDrain() -> Bool {
            if drainScheduled { return false }
            drainScheduled = true
            return true
        }
    }

    let eventLoop: any EventLoop
    private let state = NIOLockedValueBox(State())
    private let deliver: @Sendable (OutboundMessage) -> Void

    init(eventLoop: any EventLoop, deliver: @escaping @Sendable (OutboundMessage) -> Void) {
        self.eventLoop = eventLoop
        self.deliver = deliver
    }

    func post(_ item: Item) {
        let mustSchedule = state.withLockedValue { state -> Bool in
            state.items.append(item)
            return state.scheduleDrain()
        }
        if mustSchedule {
            eventLoop.execute { self.drain() }
        }
    }

    /// Posts several items at once: one lock, at most one wakeup.
    func post(contentsOf items: [Item]) {
        guard !items.isEmpty else { return }
        let mustSchedule = state.withLockedValue { state -> Bool in
            state.items.append(contentsOf: items)
            return state.scheduleDrain()
        }
        if mustSchedule {
            eventLoop.execute { self.drain() }
        }
    }

    private func drain() {
        var batch = state.withLockedValue { state -> [Item] in
            state.drainScheduled = false
            let batch = state.items
            state.items = state.spare
            state.spare = []
            return batch
        }
        for item in batch {
            switch item {
            case .deliver(let message): deliver(message)
            case .completed(let completion): completion.answer()
            }
        }
        batch.removeAll(keepingCapacity: true)
        state.withLockedValue { state in
            if state.spare.capacity < batch.capacity { state.spare = batch }
        }
    }
}
