import BrokerTestSupport
import Glibc
import Testing

@testable import BrokerClient

/// The client's keep-alive: any frame from the broker proves it alive; a ping only after a silent
/// interval; given up only after a second silent one.
@Suite struct LivenessTests {
    @Test func aBrokerThatKeepsSendingIsNeverPinged() {
        var liveness = Liveness()
        for _ in 0..<10 {
            liveness.heard()
            #expect(liveness.tick() == .none)
        }
    }

    @Test func oneSilentIntervalSendsAPingAndTwoGiveUp() {
        var liveness = Liveness()
        #expect(liveness.tick() == .none)  // the interval in which the connection opened
        #expect(liveness.tick() == .sendPing)
        #expect(liveness.tick() == .giveUp)
    }

    /// A replay that keeps the broker's pong queued still counts: its frames arrive.
    @Test func framesAfterThePingCountAsAnAnswer() {
        var liveness = Liveness()
        _ = liveness.tick()
        #expect(liveness.tick() == .sendPing)
        liveness.heard()  // a replayed message, not the pong
        #expect(liveness.tick() == .none)
        #expect(liveness.tick() == .sendPing)
        liveness.heard()  // the pong
        #expect(liveness.tick() == .none)
    }

    /// A broker process stopped with SIGSTOP keeps the TCP connection open but says nothing: the
    /// client gives the connection up, and reconnects once the broker runs again.
    @Test(.spawnsChildProcesses) func aBrokerThatFallsSilentIsGivenUpAndReconnectedTo() async throws {
        let broker = try await BrokerProcess.start()
        defer { broker.child.killNow() }
        var configuration = testClientConfiguration()
        configuration.keepAlive = .milliseconds(200)
        configuration.backoff = Backoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        let events = EventLog()
        configuration.onEvent = { events.append($0) }
        let client = BrokerClient(url: broker.url, configuration: configuration, logger: quietLogger("test-client"))
        _ = try await client.connect()
        broker.child.signal(SIGSTOP)
        try await eventually("the client gave the silent connection up") { events.disconnectedCount >= 1 }
        broker.child.signal(SIGCONT)
        try await eventually("the client reconnected") { events.connectedCount >= 2 }
        await client.close()
        #expect(try await broker.stop() == 0)
    }
}
