import NIOCore

/// A message published on another broker of the cluster, as this broker's journal learned of it.
public struct RemotePublication: Sendable {
    public var topic: String
    public var payload: ByteBuffer
    public var isBinary: Bool
    /// The journal offset of a retained message; nil for a live one.
    public var offset: UInt64?

    public init(topic: String, payload: ByteBuffer, isBinary: Bool, offset: UInt64?) {
        self.topic = topic
        self.payload = payload
        self.isBinary = isBinary
        self.offset = offset
    }
}

/// A journal shared by several brokers (cluster mode, docs/cluster.md). Besides the `Journal`
/// contract, which then holds cluster-wide (offsets, and completions in offset order):
/// - it hands the broker what the other brokers published, on the completion thread, serially
///   with append and snapshot completions and in the order the cluster committed them (a run of
///   them also ends with the `onCompletionRunEnded` handler);
/// - it carries this broker's live messages to the others, in order with its appends.
public protocol ClusterJournal: Journal {
    /// This broker's name in the cluster (`welcome.node`).
    var nodeName: String { get }

    /// Registers the handler for other brokers' publishes; register before the first append.
    func onRemotePublication(_ handler: @escaping @Sendable (RemotePublication) -> Void)

    /// Sends a live (not retained) message to the other brokers, behind every append requested
    /// before it. Never blocks; a message that cannot be sent is dropped (live messages are not
    /// kept anywhere).
    func broadcast(_ entry: JournalEntry)

    /// Whether the journal can take appends and follows the other brokers now (for `/readyz`).
    var isConnected: Bool { get }
}

/// A new random epoch (16 hex digits), as the SQLite journal makes one: for the cluster journal's
/// schema and its writers' instance ids.
package func makeJournalEpoch() -> String { Schema.makeEpoch() }
