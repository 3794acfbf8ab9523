import BrokerJournal
import BrokerTestSupport
import Foundation
import Logging
import NIOCore
import Testing

@testable import BrokerServer

/// The broker's log lines about connections and start-up, read from a captured logger.
@Suite struct ConnectionLogTests {
    /// The "connection closed" records, once `count` of them were logged.
    static func closedRecords(_ logs: LogCapture, count: Int) async throws -> [LogCapture.Record] {
        try await eventually("\(count) connection closed lines; logged: \(logs.all.map(\.message))") {
            logs.records("connection closed").count >= count
        }
        return logs.records("connection closed")
    }

    @Test func theClientsCloseCodeAndReasonAreLogged() async throws {
        let logs = LogCapture()
        try await TestBroker.with(logger: logs.logger()) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port)
            _ = try await client.nextMessage()  // welcome
            try await client.send(opcode: 0x8, payload: [0x03, 0xE9] + Array("tab closed".utf8))
            #expect(try await client.expectClose() == 1001)
            let record = try #require(try await Self.closedRecords(logs, count: 1).first)
            #expect(record.metadata["close_code"] == "1001")
            #expect(record.metadata["close_reason"] == "tab closed")
            #expect(record.metadata["closed_by"] == "client")
            #expect(record.metadata["reason"] == "client_close")
            #expect(record.metadata["peer"]?.hasPrefix("127.0.0.1:") == true, "\(record.metadata)")
            await client.close()
        }
    }

    @Test func theBrokersCloseCodeAndReasonAreLogged() async throws {
        let logs = LogCapture()
        try await TestBroker.with(logger: logs.logger()) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port)
            _ = try await client.nextMessage()  // welcome
            try await client.send(opcode: 0x1, payload: [0xC3, 0x28])  // invalid UTF-8: 1007
            #expect(try await client.expectClose() == 1007)
            await client.close()
            let record = try #require(try await Self.closedRecords(logs, count: 1).first)
            #expect(record.metadata["close_code"] == "1007")
            #expect(record.metadata["closed_by"] == "broker")
            #expect(record.metadata["close_reason"]?.isEmpty == false)
            #expect(record.metadata["reason"] == "protocol_error")
        }
    }

    @Test func aResetHasNoCloseCode() async throws {
        let logs = LogCapture()
        try await TestBroker.with(logger: logs.logger()) { broker in
            let client = try await RawWebSocketClient.connect(port: broker.port)
            _ = try await client.nextMessage()  // welcome
            await client.close()
            let record = try #require(try await Self.closedRecords(logs, count: 1).first)
            #expect(record.metadata["close_code"] == "-")
            #expect(record.metadata["closed_by"] == "-")
            #expect(record.metadata["reason"] == "reset")
        }
    }

    @Test(.spawnsChildProcesses) func journalOpenIsLoggedOnce() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        let lines = broker.child.stderr.split(separator: "\n").filter { $0.contains("journal open") }
        #expect(lines.count == 1, "\(broker.child.stderr)")
        #expect(try await broker.stop() == 0)
    }
}
