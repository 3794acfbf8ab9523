import BrokerJournal
import BrokerServer
import NIOCore

/// Appends `count` retained text messages of 64 bytes, `"ppp…"`, round-robin over `topics`
/// topics named `prefix/0`, `prefix/1`… straight to `journal`, and returns once the last one is
/// committed (appends complete in order). Offsets are 1…count on a fresh journal.
package func fillJournal(_ journal: any Journal, count: Int, topics: Int = 200, prefix: String = "replay") async {
    guard count > 0 else { return }
    let payload = ByteBuffer(string: "\"" + String(repeating: "p", count: 62) + "\"")
    await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
        for index in 0..<count {
            let entry = JournalEntry(topic: "\(prefix)/\(index % topics)", payload: payload, isBinary: false)
            journal.append(entry) { _ in if index == count - 1 { done.resume() } }
        }
    }
}

/// The broker settings the large replay tests run under.
package enum ReplaySetting: String, CaseIterable, Sendable {
    /// The defaults (flush pacing on, 1 MiB high-water mark).
    case defaults
    /// Flush pacing off.
    case pacingOff
    /// A high-water mark under one replay page: every page turns the connection unwritable
    /// before its flush, which a debug build reaches as surely as a release build (the
    /// defaults need a release build's speed to pile up a megabyte before a held flush).
    case smallHighWater

    package func apply(_ configuration: inout BrokerConfiguration) {
        switch self {
        case .defaults: break
        case .pacingOff: configuration.maxFlushDelay = .zero
        case .smallHighWater: configuration.outboundHighWaterBytes = 16 << 10
        }
    }
}

