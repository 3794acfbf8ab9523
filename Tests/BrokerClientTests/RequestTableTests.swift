import BrokerProtocol
import NIOCore
import Testing
@testable import BrokerClient

@Suite struct RequestTableTests {
    @Test func repliesMatchTheirRequestByID() throws {
        var table = RequestTable<String>()
        let a = table.register("a")
        let b = table.register("b")
        #expect(a != b)
        // Replies carry the id as the JSON text the broker echoes back.
        let reply = try ServerMessage.parseText(ByteBuffer(string: #"{"op":"ack","id":\#(b),"offset":7}"#))
        guard case .ack(let id, let offset) = reply else { Issue.record("not an ack"); return }
        #expect(offset == 7)
        do { let value = table.take(id) == "b"; #expect(value) }
        do { let value = table.take(id) == nil; #expect(value) }  // a second reply to the same id is ignored
        do { let value = table.take(RequestID(json: #""\#(a)""#)) == nil; #expect(value) }  // "1" (a string) is not 1
        do { let value = table.take(a) == "a"; #expect(value) }
        #expect(table.count == 0)
    }

    @Test func idsWrapAroundSkippingZeroAndIdsInUse() {
        var table = RequestTable<Int>(firstID: .max - 1)
        do { let value = table.register(1) == .max - 1; #expect(value) }
        do { let value = table.register(2) == .max; #expect(value) }
        do { let value = table.register(3) == 1; #expect(value) }
        var again = RequestTable<Int>(firstID: 1)
        _ = again.register(0)  // id 1 in use
        for _ in 0..<3 { _ = again.allocateID() }
        again = RequestTable<Int>(firstID: .max)
        again.insert(9, for: 1)
        do { let value = again.allocateID() == .max; #expect(value) }
        do { let value = again.allocateID() == 2; #expect(value) }  // 0 skipped, 1 in use
    }

    @Test func takeAllEmptiesTheTable() {
        var table = RequestTable<Int>()
        for value in 0..<5 { _ = table.register(value) }
        do { let value = table.takeAll().sorted() == [0, 1, 2, 3, 4]; #expect(value) }
        #expect(table.count == 0)
    }
}
