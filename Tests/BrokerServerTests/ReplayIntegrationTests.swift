import BrokerJournal
import BrokerProtocol
import BrokerTestSupport
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import BrokerServer

/// Large resumes over real sockets, to a reader that drains its socket as fast as the kernel
/// delivers (the raw client's channel reads into an unbounded stream): the size of replay users
/// reach after a deploy or a laptop sleep, at default settings and with flush pacing off.
@Suite(.serialized) struct ReplayIntegrationTests {
    static let messages = 100_000
    static let topics = 200

    /// A journal that keeps every message (no topic reaches the retention limit): a message
    /// pruned during a test would look like a gap in the replay.
    static func openJournal() throws -> SQLiteJournal {
        var logger = Logger(label: "test-journal")
        logger.logLevel = .warning
        var configuration = JournalConfiguration()
        configuration.retention.maxMessagesPerTopic = 1_000_000
        return try SQLiteJournal.open(directory: temporaryDirectory(), configuration: configuration, logger: logger)
    }

    /// Reads until the pong of a ping sent right after `subscribed` (the broker answers it after
    /// the replay) and returns the replayed offsets in the order received.
    static func replay(_ client: RawWebSocketClient, _ fields: String) async throws -> (recovered: Bool?, offsets: [UInt64]) {
        try await client.sendText(#"{"op":"subscribe",\#(fields)}"#)
        var recovered: Bool?
        var offsets: [UInt64] = []
        offsets.reserveCapacity(messages)
        while true {
            // A stall shows as a timeout here; progress never pauses this long.
            switch try await client.nextMessage(timeout: .seconds(30)) {
            case .subscribed(_, _, let value):
                recovered = value
                try await client.sendText(#"{"op":"ping","id":"end"}"#)
            case .message(let delivery):
                #expect(delivery.replay)
                offsets.append(delivery.offset ?? 0)
            case .pong:
                return (recovered, offsets)
            case let other:
                throw TestFailure("unexpected \(other)")
            }
        }
    }

    @Test func hundredThousandRetainedReplayWholeToAFastReader() async throws {
        let journal = try Self.openJournal()
        await fillJournal(journal, count: Self.messages, topics: Self.topics)
        for setting in ReplaySetting.allCases {
            try await TestBroker.with(journal: journal, configure: setting.apply) { broker in
                let client = try await broker.client()
                let result = try await Self.replay(client, ##""topic":"replay/#","since":0,"epoch":"\##(journal.epoch)""##)
                #expect(result.recovered == true, "\(setting)")
                #expect(result.offsets.count == Self.messages, "\(setting)")
                #expect(result.offsets.elementsEqual(1...UInt64(Self.messages)), "\(setting): offsets out of order, duplicated or missing")
                await client.close()
            }
        }
        await journal.close()
    }

    /// PROTOCOL.md v1: a resumed replay while a publisher streams retained messages at full
    /// speed still delivers every offset after `since` once, in order, across the hand-over.
    @Test func resumeDuringAFullSpeedRetainedStreamHasNoGapAndNoDuplicate() async throws {
        let journal = try Self.openJournal()
        let backlog = 30_000
        await fillJournal(journal, count: backlog, topics: Self.topics)
        try await TestBroker.with(journal: journal) { broker in
            let publisher = try await broker.client()
            let subscriber = try await broker.client()
            let replayEnded = ReplayFlag()
            // Streams until the subscriber's replay has ended and a few thousand more were sent
            // after that, so live publishes overlap the whole replay and the hand-over.
            let stream = Task {
                var sent = 0
                var sentAfterReplay = 0
                while sentAfterReplay < 3_000 {
                    if replayEnded.isSet { sentAfterReplay += 1 }
                    sent += 1
                    try await publisher.sendText(#"{"op":"publish","topic":"replay/live/\#(sent % 7)","data":\#(sent),"retain":true}"#)
                }
                try await publisher.sendText(#"{"op":"publish","topic":"replay/last","data":0,"retain":true,"id":"last"}"#)
                while true {
                    if case .ack(_, let offset?) = try await publisher.nextMessage(timeout: .seconds(30)) { return offset }
                }
            }
            let since: UInt64 = 10_000
            try await subscriber.sendText(##"{"op":"subscribe","topic":"replay/#","since":\##(since),"epoch":"\##(journal.epoch)","id":"s"}"##)
            var offsets: [UInt64] = []
            var lastOffset: UInt64?
            while lastOffset == nil || offsets.last.map({ $0 < lastOffset! }) ?? true {
                switch try await subscriber.nextMessage(timeout: .seconds(30)) {
                case .subscribed(_, _, let recovered):
                    #expect(recovered == true)
                    try await subscriber.sendText(#"{"op":"ping","id":"end"}"#)
                case .pong:
                    replayEnded.set()
                    lastOffset = try await stream.value
                case .message(let delivery):
                    offsets.append(delivery.offset ?? 0)
                case let other:
                    throw TestFailure("unexpected \(other)")
                }
            }
            let expected = Array((since + 1)...lastOffset!)
            #expect(offsets.count == expected.count)
            let firstDifference = zip(offsets, expected).enumerated().first { $0.element.0 != $0.element.1 }
            #expect(firstDifference == nil, "offset \(firstDifference.map { "\($0.element.0) where \($0.element.1) was due" } ?? "")")
            #expect(lastOffset! > UInt64(backlog) + 3_000)
            await publisher.close()
            await subscriber.close()
        }
        await journal.close()
    }
}

/// Set once by the subscriber's side, read by the publisher's task.
final class ReplayFlag: Sendable {
    private let value = NIOLockedValueBox(false)
    var isSet: Bool { value.withLockedValue { $0 } }
    func set() { value.withLockedValue { $0 = true } }
}
