import Atomics

/// A budget of bytes shared by every connection (HTTP bodies in flight): taken before the bytes
/// are held, given back when they are let go.
final class ByteBudget: Sendable {
    /// 0: no limit.
    let limit: Int
    private let used = ManagedAtomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// Bytes taken and not given back.
    var inUse: Int { used.load(ordering: .relaxed) }

    /// Takes `bytes` if that stays within the limit.
    func take(_ bytes: Int) -> Bool {
        guard bytes > 0 else { return true }
        let now = used.wrappingIncrementThenLoad(by: bytes, ordering: .relaxed)
        if limit > 0, now > limit {
            used.wrappingDecrement(by: bytes, ordering: .relaxed)
            return false
        }
        return true
    }

    func giveBack(_ bytes: Int) {
        guard bytes > 0 else { return }
        used.wrappingDecrement(by: bytes, ordering: .relaxed)
    }
}
