import NIOConcurrencyHelpers
import NIOCore

/// Work for one event loop posted from the journal writer thread, batched: a post that finds the
/// mailbox non-empty only appends, so one event-loop task carries everything a group commit
/// produced (its fan-outs and its acks) instead of one task per message.
///
/// Order is kept: items run in the order posted, and a post made before some other task was
/// enqueued on the loop runs before that task (the drain task is enqueued by the first post into
/// an empty mailbox, and a post after a drain took the items enqueues a new one).
final class LoopMailbox: Sendable {
    enum Item: Sendable {
        case deliver(OutboundMessage)
        case run(@Sendable () -> Void)
    }

    private struct State {
        var items: [Item] = []
        var spare: [Item] = []
        var drainScheduled = false
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
            if state.drainScheduled { return false }
            state.drainScheduled = true
            return true
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
            case .run(let body): body()
            }
        }
        batch.removeAll(keepingCapacity: true)
        state.withLockedValue { state in
            if state.spare.capacity < batch.capacity { state.spare = batch }
        }
    }
}
