import Foundation
import NIOCore

/// What one writer transaction tells the other brokers, sent with `pg_notify` on
/// `FeedNotification.channel` inside the transaction (so it is delivered at commit, in commit
/// order), and how it is taken apart again.
///
/// A batch is text (NOTIFY payloads are text), one line per entry, in the order the broker
/// requested them:
/// - `R<offset> <t|b> <topic> <payload>` — a retained message; the payload is `-` when it is
///   larger than `inlinePayloadLimit` bytes: the receiver reads the row by its offset.
/// - `L <t|b> <topic> <payload>` — a live message, always inline.
/// Topics and payloads are base64. A batch longer than `maxChunkBytes` is cut into chunks, each
/// sent as its own notification `<writer>:<batch>:<index>/<count>|<chunk>` (NOTIFY takes at most
/// 8000 bytes); one transaction's notifications reach a listener together and in order, so the
/// receiver only has to join consecutive chunks.
struct FeedNotification: Equatable {
    static let channel = "broker_feed"
    /// Larger retained payloads go by reference.
    static let inlinePayloadLimit = 1_024
    /// A chunk's text, under NOTIFY's 8000-byte limit with room for the header.
    static let maxChunkBytes = 7_800

    enum Entry: Equatable {
        case retained(offset: UInt64, topic: String, isBinary: Bool, payload: ByteBuffer?)
        case live(topic: String, isBinary: Bool, payload: ByteBuffer)
    }

    /// The writing broker's instance (random per process) and its batch number.
    var writer: String
    var batch: UInt64
    var entries: [Entry]

    /// The notifications' payloads, in the order to send them.
    func encodedChunks() -> [String] {
        var body = ""
        for entry in entries {
            if !body.isEmpty { body += "\n" }
            switch entry {
            case .retained(let offset, let topic, let isBinary, let payload):
                body += "R\(offset) \(isBinary ? "b" : "t") \(Self.base64(topic)) "
                body += payload.map(Self.base64) ?? "-"
            case .live(let topic, let isBinary, let payload):
                body += "L \(isBinary ? "b" : "t") \(Self.base64(topic)) \(Self.base64(payload))"
            }
        }
        let utf8 = Array(body.utf8)  // ASCII only: cutting anywhere is safe
        let count = max(1, (utf8.count + Self.maxChunkBytes - 1) / Self.maxChunkBytes)
        return (0..<count).map { index in
            let start = index * Self.maxChunkBytes
            let chunk = utf8[start..<min(utf8.count, start + Self.maxChunkBytes)]
            return "\(writer):\(batch):\(index + 1)/\(count)|" + String(decoding: chunk, as: UTF8.self)
        }
    }

    /// One received notification: its header and its part of the body.
    struct Chunk {
        var writer: String
        var batch: UInt64
        var index: Int
        var count: Int
        var text: Substring
    }

    static func chunk(_ payload: String) -> Chunk? {
        guard let bar = payload.firstIndex(of: "|") else { return nil }
        let header = payload[..<bar].split(separator: ":")
        guard header.count == 3 else { return nil }
        let position = header[2].split(separator: "/")
        guard position.count == 2, let batch = UInt64(header[1]), let index = Int(position[0]), let count = Int(position[1])
        else { return nil }
        return Chunk(writer: String(header[0]), batch: batch, index: index, count: count, text: payload[payload.index(after: bar)...])
    }

    /// Parses a whole batch's body (its chunks joined); nil when malformed.
    static func decode(writer: String, batch: UInt64, body: String) -> FeedNotification? {
        var entries: [Entry] = []
        for line in body.split(separator: "\n", omittingEmptySubsequences: true) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            if line.hasPrefix("R"), fields.count == 4, let offset = UInt64(fields[0].dropFirst()),
                let topic = decodeBase64(fields[2]).map({ String(buffer: $0) }) {
                let payload = fields[3] == "-" ? nil : decodeBase64(fields[3])
                if fields[3] != "-" && payload == nil { return nil }
                entries.append(.retained(offset: offset, topic: topic, isBinary: fields[1] == "b", payload: payload))
            } else if line.hasPrefix("L"), fields.count == 4,
                let topic = decodeBase64(fields[2]).map({ String(buffer: $0) }), let payload = decodeBase64(fields[3]) {
                entries.append(.live(topic: topic, isBinary: fields[1] == "b", payload: payload))
            } else {
                return nil
            }
        }
        return FeedNotification(writer: writer, batch: batch, entries: entries)
    }

    private static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
    private static func base64(_ buffer: ByteBuffer) -> String {
        buffer.withUnsafeReadableBytes { Data($0).base64EncodedString() }
    }
    private static func decodeBase64(_ text: Substring) -> ByteBuffer? {
        guard let data = Data(base64Encoded: String(text)) else { return nil }
        return ByteBuffer(bytes: data)
    }
}

/// Joins the chunks of consecutive notifications into batches.
struct FeedAssembler {
    private var partial: (writer: String, batch: UInt64, next: Int, body: String)?

    /// The batch `payload` completes, if any; malformed or out-of-place chunks are dropped (and
    /// reported through `dropped`).
    mutating func add(_ payload: String, dropped: (String) -> Void) -> FeedNotification? {
        guard let chunk = FeedNotification.chunk(payload) else {
            dropped("malformed notification")
            return nil
        }
        if chunk.index == 1 {
            if partial != nil { dropped("incomplete batch") }
            partial = (chunk.writer, chunk.batch, 1, "")
        }
        guard var current = partial, current.writer == chunk.writer, current.batch == chunk.batch,
            current.next == chunk.index
        else {
            partial = nil
            dropped("chunk out of order")
            return nil
        }
        current.body += chunk.text
        current.next += 1
        if chunk.index < chunk.count {
            partial = current
            return nil
        }
        partial = nil
        guard let batch = FeedNotification.decode(writer: current.writer, batch: current.batch, body: current.body) else {
            dropped("malformed batch")
            return nil
        }
        return batch
    }
}
