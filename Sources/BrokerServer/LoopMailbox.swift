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
