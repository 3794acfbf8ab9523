import NIOConcurrencyHelpers

/// The writer's transactions that the feed has not processed yet, shared by the two: the writer
/// registers a group before it begins its transaction and resolves it after the commit; the feed
/// completes a group's requests when the group's notification (or a catch-up read) reaches it.
///
/// Also the gate through which the feed pauses the writer while it catches up from the journal
/// (no commit of ours may land while the feed reads what it missed).
final class OwnBatches: @unchecked Sendable {
    struct Committed {
        var batch: UInt64
        /// The offset before the group's first append (the group's appends took the next ones).
        var before: UInt64
        var requests: [PostgresWriter.Request]

        var appendCount: Int {
            requests.reduce(0) { count, request in
                if case .append = request { return count + 1 }
                return count
            }
        }
    }

    private enum State {
        case inFlight([PostgresWriter.Request])
        case committed(Committed)
    }

    private let lock = NIOLock()
    private var batches: [UInt64: State] = [:]
    private var resolutionWaiters: [UInt64: [CheckedContinuation<Void, Never>]] = [:]
    private var gateClosed = false
    private var gateWaiters: [CheckedContinuation<Void, Never>] = []
    private var drainWaiters: [CheckedContinuation<Void, Never>] = []

    /// Writer: registers a group about to be committed, once the feed has the gate open (in one
    /// step under the lock, so that a catch-up that closed the gate waits for every group that
    /// got through).
    func register(_ batch: UInt64, _ requests: [PostgresWriter.Request]) async {
        while true {
            let registered = lock.withLock { () -> Bool in
                guard !gateClosed else { return false }
                batches[batch] = .inFlight(requests)
                return true
            }
            if registered { return }
            await withCheckedContinuation { (open: CheckedContinuation<Void, Never>) in
                let wait = lock.withLock { () -> Bool in
                    if gateClosed { gateWaiters.append(open) }
                    return gateClosed
                }
                if !wait { open.resume() }
            }
        }
    }

    /// Writer: the group committed.
    func committed(_ batch: UInt64, before: UInt64) {
        resolve(batch) { state in
            guard case .inFlight(let requests) = state else { return state }
            return .committed(Committed(batch: batch, before: before, requests: requests))
        }
    }

    /// Writer: the group failed (its requests are the writer's to fail); a notification of it, had
    /// it committed after all, is then taken as another broker's.
    func failed(_ batch: UInt64) {
        resolve(batch) { _ in nil }
    }

    private func resolve(_ batch: UInt64, _ change: (State) -> State?) {
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            if let state = batches[batch] { batches[batch] = change(state) }
            var waiters = resolutionWaiters.removeValue(forKey: batch) ?? []
            if !batches.values.contains(where: { if case .inFlight = $0 { return true } else { return false } }) {
                waiters += drainWaiters
                drainWaiters.removeAll()
            }
            return waiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Feed: the committed group `batch`, once it is resolved; nil when it failed, was already
    /// processed, or is not ours.
    func awaitCommitted(_ batch: UInt64) async -> Committed? {
        while true {
            let isInFlight = lock.withLock { () -> Bool in
                if case .inFlight = batches[batch] { return true }
                return false
            }
            if !isInFlight { break }
            await withCheckedContinuation { (resolved: CheckedContinuation<Void, Never>) in
                let wait = lock.withLock { () -> Bool in
                    guard case .inFlight = batches[batch] else { return false }
                    resolutionWaiters[batch, default: []].append(resolved)
                    return true
                }
                if !wait { resolved.resume() }
            }
        }
        return lock.withLock {
            if case .committed(let committed) = batches[batch] { return committed }
            return nil
        }
    }

    /// Feed: forgets a group it processed.
    func remove(_ batch: UInt64) {
        lock.withLock { _ = batches.removeValue(forKey: batch) }
    }

    /// Feed: the committed groups not processed yet, in commit order.
    func committedGroups() -> [Committed] {
        lock.withLock {
            batches.values.compactMap { state -> Committed? in
                if case .committed(let committed) = state { return committed }
                return nil
            }.sorted { $0.batch < $1.batch }
        }
    }

    /// Feed: pauses the writer before its next group and waits until no group is in flight.
    func closeGate() async {
        lock.withLock { gateClosed = true }
        await withCheckedContinuation { (drained: CheckedContinuation<Void, Never>) in
            let wait = lock.withLock { () -> Bool in
                let inFlight = batches.values.contains { if case .inFlight = $0 { return true } else { return false } }
                if inFlight { drainWaiters.append(drained) }
                return inFlight
            }
            if !wait { drained.resume() }
        }
    }

    /// Feed: lets the writer go on.
    func openGate() {
        let waiters = lock.withLock { () -> [CheckedContinuation<Void, Never>] in
            gateClosed = false
            defer { gateWaiters.removeAll() }
            return gateWaiters
        }
        waiters.forEach { $0.resume() }
    }
}
