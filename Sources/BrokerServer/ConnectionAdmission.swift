import Atomics
import NIOConcurrencyHelpers

/// Counts the WebSocket connections the broker holds, in total and per IP address, and refuses
/// one past either cap (`limits.max-connections`, `limits.max-connections-per-ip`).
///
/// Shared by every event loop; touched once when an upgrade is admitted and once when its
/// channel closes, never per message. The total is an atomic; the per-address counts sit behind
/// a lock (only when a per-address cap is set).
final class ConnectionAdmission: Sendable {
    /// Why an upgrade was refused; `description` is the plain-text reason of the 503.
    enum Refusal: Error, Equatable, CustomStringConvertible {
        case total(limit: Int)
        case perAddress(limit: Int)

        var description: String {
            switch self {
            case .total(let limit): return "the broker holds its maximum of \(limit) connections; retry later"
            case .perAddress(let limit): return "at most \(limit) connections per IP address; retry later"
            }
        }
    }

    /// 0: no cap. Atomics because a reload (SIGHUP) may change them while loops admit.
    private let totalCap: ManagedAtomic<Int>
    private let perAddressCap: ManagedAtomic<Int>
    private let total = ManagedAtomic<Int>(0)
    private let perAddress = NIOLockedValueBox<[String: Int]>([:])

    init(maxConnections: Int, maxPerAddress: Int) {
        self.totalCap = ManagedAtomic(maxConnections)
        self.perAddressCap = ManagedAtomic(maxPerAddress)
    }

    var maxConnections: Int { totalCap.load(ordering: .relaxed) }
    var maxPerAddress: Int { perAddressCap.load(ordering: .relaxed) }

    /// New caps for the upgrades from now on (a reload). Connections already admitted stay, even
    /// past a lowered cap.
    func setLimits(maxConnections: Int, maxPerAddress: Int) {
        totalCap.store(maxConnections, ordering: .relaxed)
        perAddressCap.store(maxPerAddress, ordering: .relaxed)
    }

    /// Connections admitted and not released.
    var count: Int { total.load(ordering: .relaxed) }

    /// Takes a place for a connection from `address` (nil when unknown: counted in the total
    /// only), or says why there is none. Every success is paired with one `release(address)`.
    func admit(_ address: String?) -> Refusal? {
        let maxConnections = self.maxConnections
        let maxPerAddress = self.maxPerAddress
        let now = total.wrappingIncrementThenLoad(ordering: .relaxed)
        if maxConnections > 0, now > maxConnections {
            total.wrappingDecrement(ordering: .relaxed)
            return .total(limit: maxConnections)
        }
        guard maxPerAddress > 0, let address else { return nil }
        let admitted = perAddress.withLockedValue { counts -> Bool in
            let current = counts[address, default: 0]
            guard current < maxPerAddress else { return false }
            counts[address] = current + 1
            return true
        }
        if !admitted {
            total.wrappingDecrement(ordering: .relaxed)
            return .perAddress(limit: maxPerAddress)
        }
        return nil
    }

    /// Gives back the place of a connection admitted from `address`.
    func release(_ address: String?) {
        total.wrappingDecrement(ordering: .relaxed)
        // Whatever the cap is now: it may have been set or lifted since the admission (a reload).
        guard let address else { return }
        perAddress.withLockedValue { counts in
            let remaining = counts[address, default: 1] - 1
            counts[address] = remaining > 0 ? remaining : nil
        }
    }

    /// Connections from `address` admitted and not released.
    func count(from address: String) -> Int {
        perAddress.withLockedValue { $0[address, default: 0] }
    }
}
