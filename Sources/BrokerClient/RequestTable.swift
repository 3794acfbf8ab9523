import BrokerProtocol

/// Outstanding requests by id: hands out request ids and matches replies to their waiters.
///
/// Ids are UInt32 (the binary publish frame carries a uint32), sent as JSON numbers, so the reply's
/// `id` is the same decimal text. Ids wrap around, skipping 0 and ids still in use.
struct RequestTable<Waiter> {
    private var next: UInt32 = 1
    private var waiters: [RequestID: Waiter] = [:]

    init(firstID: UInt32 = 1) { next = firstID == 0 ? 1 : firstID }

    /// Number of requests waiting for a reply.
    var count: Int { waiters.count }

    /// A fresh id not currently in use.
    mutating func allocateID() -> UInt32 {
        while true {
            let id = next
            next = next == .max ? 1 : next + 1
            if waiters[RequestID(id)] == nil { return id }
        }
    }

    /// Registers the waiter for the reply to request `id`.
    mutating func insert(_ waiter: Waiter, for id: UInt32) {
        waiters[RequestID(id)] = waiter
    }

    /// Allocates an id and registers `waiter` for it.
    mutating func register(_ waiter: Waiter) -> UInt32 {
        let id = allocateID()
        insert(waiter, for: id)
        return id
    }

    /// Removes and returns the waiter of the request a reply answers (nil: unknown or already done).
    mutating func take(_ id: RequestID) -> Waiter? {
        waiters.removeValue(forKey: id)
    }

    mutating func take(_ id: UInt32) -> Waiter? {
        take(RequestID(id))
    }

    /// Removes and returns every waiter (the connection is gone).
    mutating func takeAll() -> [Waiter] {
        defer { waiters.removeAll() }
        return Array(waiters.values)
    }
}

extension RequestTable: Sendable where Waiter: Sendable {}
