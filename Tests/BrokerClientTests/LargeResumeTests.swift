import BrokerClient
import BrokerJournal
import BrokerTestSupport
import Foundation
import Testing

/// A resume of 100,000 retained messages through the client library and through
/// `broker-cli subscribe --since 0`, under each `ReplaySetting` (issue 12: the broker's replay
/// stalled for readers this fast). One journal serves every setting: a replay only reads it.
@Suite(.serialized) struct LargeResumeTests {
    static let messages = 100_000

    static func filledJournal(_ directory: String) async throws -> SQLiteJournal {
        let journal = try openJournal(directory)
        await fillJournal(journal, count: messages)
        return journal
    }

    @Test func brokerClientResumesAHundredThousandMessagesInOrder() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let journal = try await Self.filledJournal(directory)
        for setting in ReplaySetting.allCases {
            try await TestBroker.with(journal: journal, configure: setting.apply) { broker in
                var configuration = testClientConfiguration()
                // Room for the whole replay: this test is about the broker delivering it, not about
                // a consumer slower than the network.
                configuration.subscriptionBufferSize = Self.messages
                let client = BrokerClient(url: broker.url, configuration: configuration, logger: quietLogger("test-client"))
                try await client.connect()
                let subscription = try await client.subscribe("replay/#", since: 0, epoch: journal.epoch)
                let offsets = try await withDeadline("\(setting): the replay through BrokerClient", timeout: .seconds(120)) {
                    var offsets: [UInt64] = []
                    offsets.reserveCapacity(Self.messages)
                    for try await message in subscription where message.replay {
                        offsets.append(message.offset ?? 0)
                        if offsets.count == Self.messages { break }
                    }
                    return offsets
                }
                #expect(offsets.count == Self.messages, "\(setting)")
                #expect(offsets.elementsEqual(1...UInt64(Self.messages)), "\(setting): offsets out of order, duplicated or missing")
                #expect(subscription.droppedCount == 0 && subscription.gapCount == 0, "\(setting)")
                await client.close()
            }
        }
        await journal.close()
    }

    @Test(.spawnsChildProcesses) func cliSubscribeSinceZeroPrintsAHundredThousandLinesInOrder() async throws {
        let directory = temporaryDirectory()
        defer { removeDirectory(directory) }
        let journal = try await Self.filledJournal(directory)
        for setting in ReplaySetting.allCases {
            try await TestBroker.with(journal: journal, configure: setting.apply) { broker in
                let subscriber = try ChildProcess("broker-cli", ["subscribe", "replay/#", "--since", "0", "--url", broker.url])
                defer { subscriber.killNow() }
                // A bound for a stalled replay, not a speed requirement.
                try await eventually(
                    "\(setting): \(Self.messages) lines (have \(subscriber.stdoutLineCount)); stderr: \(subscriber.stderr)",
                    timeout: .seconds(120), every: .milliseconds(100)
                ) {
                    subscriber.stdoutLineCount >= Self.messages || !subscriber.isRunning
                }
                subscriber.interrupt()
                #expect(try await subscriber.waitForExit(timeout: .seconds(10)) == 0)
                let lines = subscriber.stdoutLines
                let offsets = lines.map { line -> UInt64 in
                    guard let range = line.range(of: #""offset":"#) else { return 0 }
                    return UInt64(line[range.upperBound...].prefix { $0.isNumber }) ?? 0
                }
                #expect(offsets.count == Self.messages, "\(setting)")
                #expect(offsets.elementsEqual(1...UInt64(Self.messages)), "\(setting): offsets out of order, duplicated or missing")
                #expect(lines.first == #"{"topic":"replay/0","data":"\#(String(repeating: "p", count: 62))","offset":1,"replay":true}"#)
                #expect(subscriber.stderr.isEmpty, "\(setting): \(subscriber.stderr)")
            }
        }
        await journal.close()
    }
}
