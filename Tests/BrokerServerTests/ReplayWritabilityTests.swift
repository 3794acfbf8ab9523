import BrokerJournal
import BrokerProtocol
import Logging
import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing

@testable import BrokerServer

/// A replay of many pages to a reader that takes everything the broker flushes: every page must
/// be written whatever the flush policy holds and however NIO reports writability (issue 12: a
/// replay waited for a writability event that had already fired inside its own flush).
@Suite struct ReplayWritabilityTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var maxFlushDelay: TimeAmount
        var payloadBytes: Int
        var highWaterBytes: Int
        var messages: Int
        var testDescription: String { name }
    }

    static let cases = [
        // The issue's shape: small messages, the flush policy holds the flush while pages pile up
        // unflushed past the high-water mark.
        Case(name: "paced, 200 B", maxFlushDelay: .milliseconds(20), payloadBytes: 200, highWaterBytes: 256 << 10, messages: 40 * 512),
        // Without pacing, a single page of large messages crosses the mark before the flush.
        Case(name: "unpaced, 4 KiB", maxFlushDelay: .zero, payloadBytes: 4_096, highWaterBytes: 1 << 20, messages: 8 * 512),
    ]

    @Test(arguments: cases)
    func replayOfManyPagesIsWrittenWholeToAFastReader(_ scenario: Case) throws {
        let loop = EmbeddedEventLoop()
        var configuration = BrokerConfiguration()
        configuration.maxFlushDelay = scenario.maxFlushDelay
        configuration.replayPageSize = 512
        let journal = MemoryJournal(epoch: "e1", execution: .inline)
        let broker = Broker(configuration: configuration, journal: journal, eventLoops: [loop], logger: Logger(label: "test"))
        let socket = FastReaderSocket(highWaterBytes: scenario.highWaterBytes)
        let channel = EmbeddedChannel(loop: loop)
        try channel.pipeline.syncOperations.addHandler(socket)
        let connection = WebSocketConnection(broker: broker, shard: broker.shards[0], mode: .broker)
        try channel.pipeline.syncOperations.addHandler(connection)
        defer { _ = try? channel.finish() }

        let payload = "\"" + String(repeating: "x", count: scenario.payloadBytes - 2) + "\""
        for index in 0..<scenario.messages {
            journal.append(JournalEntry(topic: "t/\(index % 200)", payload: ByteBuffer(string: payload), isBinary: false)) { _ in }
        }
        loop.run()
        var reader = FrameReader()
        try reader.take(from: channel)
        #expect(reader.texts.count == 1 && reader.texts[0].hasPrefix(#"{"op":"welcome""#))
        reader.texts.removeAll()

        // A busy loop: the last flush took 1 ms, so the next writes may be held (FlushPolicy.swift).
        loop.advanceTime(by: .seconds(1))
        broker.shards[0].flushPolicy.flushed(from: loop.now - .milliseconds(1), to: loop.now, bytesPerConnection: 100)

        try channel.sendClientText(##"{"op":"subscribe","topic":"t/#","since":0,"id":1}"##)
        // Bounded in steps of the loop's clock, not in wall time: a stalled replay stops making
        // progress and the loop ends with it.
        for _ in 0..<200 where reader.offsets.count < scenario.messages {
            loop.run()
            try reader.take(from: channel)
            loop.advanceTime(by: .milliseconds(5))
        }
        try reader.take(from: channel)

        #expect(reader.texts.first == #"{"op":"subscribed","topic":"t/#","id":1,"recovered":true}"#)
        #expect(reader.offsets.count == scenario.messages)
        #expect(reader.offsets.elementsEqual(1...UInt64(scenario.messages)), "offsets out of order, duplicated or missing")
        // The test went through the edge it is about: unwritable, then writable inside a flush.
        #expect(socket.writableAgainInsideFlush > 0)
        #expect(connection.state == .open)
        // The hand-over to live delivery happened: a live publish arrives after the replay.
        try channel.sendClientText(#"{"op":"publish","topic":"t/live","data":1}"#)
        loop.advanceTime(by: .milliseconds(20))
        try reader.take(from: channel)
        #expect(reader.texts.last == #"{"op":"message","topic":"t/live","data":1}"#)
    }
}

/// Decodes the server's frames as the channel's outbound buffers arrive.
struct FrameReader {
    /// Text frames other than replayed messages, in order.
    var texts: [String] = []
    /// Offsets of messages, in the order received.
    var offsets: [UInt64] = []

    mutating func take(from channel: EmbeddedChannel) throws {
        for frame in try channel.readServerFrames() where frame.opcode == 0x1 {
            if frame.text.hasPrefix(#"{"op":"message""#), let offset = Self.offset(in: frame.text) {
                offsets.append(offset)
            } else {
                texts.append(frame.text)
            }
        }
    }

    static func offset(in text: String) -> UInt64? {
        guard let range = text.range(of: #""offset":"#) else { return nil }
        return UInt64(text[range.upperBound...].prefix { $0.isNumber })
    }
}
