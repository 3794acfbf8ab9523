import BrokerJournal
import NIOWebSocket
import Testing

@testable import BrokerServer

/// The connection's life as a value, with no channel: every transition and the action it asks for.
@Suite struct ConnectionLifecycleTests {
    static let job = ReplayJob(filter: "t/#", id: nil, selection: .since(0), recovered: nil)

    @Test func aReplayRunsPageByPageAndHandsOver() {
        var lifecycle = ConnectionLifecycle()
        #expect(lifecycle.phase == .open && lifecycle.replay == nil)
        let step1 = lifecycle.startReplay(Self.job)
        #expect(step1)
        #expect(lifecycle.phase == .replaying && lifecycle.isOpen)
        let secondReplay = lifecycle.startReplay(Self.job)
        #expect(!secondReplay, "one replay at a time: later subscribes wait")
        lifecycle.updateReplay { $0.cursor = 512 }
        #expect(lifecycle.replay?.cursor == 512)
        let step2 = lifecycle.pageWritten(isLast: false, writable: true)
        #expect(step2 == .readNextPage)
        let step3 = lifecycle.writable()
        #expect(step3 == nil, "nothing waits while the socket keeps up")
        let step4 = lifecycle.pageWritten(isLast: true, writable: true)
        #expect(step4 == .finish)
        guard case .handOver(let job) = lifecycle.handOver(writable: true) else {
            Issue.record("expected the hand-over")
            return
        }
        #expect(job.cursor == 512)
        #expect(lifecycle.phase == .open && lifecycle.replay == nil)
    }

    @Test func aWaitForWritabilityIsRecordedBeforeTheFlushAndEndsOnce() {
        var lifecycle = ConnectionLifecycle()
        _ = lifecycle.startReplay(Self.job)
        let step5 = lifecycle.pageWritten(isLast: false, writable: false)
        #expect(step5 == .awaitWritability)
        // The flush that follows may report writability from inside itself: the wait is already
        // recorded, so that report resumes the replay, once.
        let step6 = lifecycle.writable()
        #expect(step6 == .readNextPage)
        let step7 = lifecycle.writable()
        #expect(step7 == nil)
        #expect(lifecycle.phase == .replaying)
    }

    @Test func theHandOverWaitsForTheSocketToDrain() {
        var lifecycle = ConnectionLifecycle()
        _ = lifecycle.startReplay(Self.job)
        guard case .awaitWritability = lifecycle.handOver(writable: false) else {
            Issue.record("expected a wait")
            return
        }
        #expect(lifecycle.phase == .draining && lifecycle.replay != nil)
        let step8 = lifecycle.writable()
        #expect(step8 == .handOver)
        guard case .handOver = lifecycle.handOver(writable: true) else {
            Issue.record("expected the hand-over")
            return
        }
        #expect(lifecycle.phase == .open)
        guard case .nothing = lifecycle.handOver(writable: true) else {
            Issue.record("a second hand-over must do nothing")
            return
        }
    }

    @Test func theBrokersCloseEndsAReplayAndHappensOnce() {
        var lifecycle = ConnectionLifecycle()
        _ = lifecycle.startReplay(Self.job)
        let step9 = lifecycle.close(.slowConsumer)
        #expect(step9)
        #expect(lifecycle.phase == .closing && !lifecycle.isOpen && lifecycle.replay == nil)
        #expect(lifecycle.disconnectReason == .slowConsumer)
        let secondClose = lifecycle.close(.shutdown)
        #expect(!secondClose, "the first close frame is the only one")
        let step10 = lifecycle.pageWritten(isLast: false, writable: true)
        #expect(step10 == .finish)
        let step11 = lifecycle.writable()
        #expect(step11 == nil)
        // The peer answers: the handshake is complete, the reason stays the broker's.
        let step12 = lifecycle.peerClosed()
        #expect(step12 == .dropConnection)
        #expect(lifecycle.phase == .closed)
        let step13 = lifecycle.ended()
        #expect(step13 == .slowConsumer)
        // What the log line says: the broker's close frame, not the peer's answer.
        #expect(lifecycle.firstClose == .init(sender: .broker, code: 1008, reason: "slow consumer"))
    }

    @Test func thePeersCloseIsEchoedOnce() {
        var lifecycle = ConnectionLifecycle()
        #expect(lifecycle.firstClose == nil)
        let step14 = lifecycle.peerClosed(code: 1001, reason: "tab closed")
        #expect(step14 == .echo)
        #expect(lifecycle.firstClose == .init(sender: .client, code: 1001, reason: "tab closed"))
        #expect(lifecycle.disconnectReason == .clientClose)
        let step15 = lifecycle.peerClosed()
        #expect(step15 == .ignore)
        let closeAfterEcho = lifecycle.close(.shutdown)
        #expect(!closeAfterEcho)
        let step16 = lifecycle.ended()
        #expect(step16 == .clientClose)
    }

    @Test(arguments: [
        (ConnectionLifecycle.Phase.open, DisconnectReason.reset),
        (.closing, .pingTimeout),
    ])
    func theEndOfTheTCPConnectionIsCountedByWhatCameBefore(_ before: ConnectionLifecycle.Phase, _ expected: DisconnectReason) {
        var lifecycle = ConnectionLifecycle()
        if before == .closing { _ = lifecycle.close(.pingTimeout) }
        let step17 = lifecycle.ended()
        #expect(step17 == expected)
        #expect(lifecycle.phase == .closed)
        let step18 = lifecycle.ended()
        #expect(step18 == expected, "counted the same however often it is asked")
        #expect((lifecycle.firstClose == nil) == (before == .open), "no close frame before a reset")
    }

    @Test func closeCausesCarryTheirCodeAndMetric() {
        #expect(CloseCause.slowConsumer.codeNumber == 1008 && CloseCause.slowConsumer.disconnect == .slowConsumer)
        #expect(CloseCause.pingTimeout.codeNumber == 1001 && CloseCause.pingTimeout.disconnect == .pingTimeout)
        #expect(CloseCause.shutdown.codeNumber == 1001 && CloseCause.shutdown.disconnect == .shutdown)
        for code in [1002, 1007, 1009] {
            #expect(CloseCause.violation(WebSocketErrorCode(codeNumber: code), "x").disconnect == .protocolError)
        }
        #expect(CloseCause.violation(.policyViolation, "x").disconnect == .other)
        #expect(CloseCause.violation(.unknown(3000), "x").codeNumber == 3000)
    }
}
