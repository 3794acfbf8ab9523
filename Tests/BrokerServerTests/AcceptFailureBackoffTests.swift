import Foundation
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import BrokerServer

/// The listener's pause after a failed accept (EMFILE), on an EmbeddedChannel: EmbeddedChannel
/// ignores `autoRead`, so the handler's switch is observed through its injected setter.
@Suite struct AcceptFailureBackoffTests {
    final class Switch {
        var calls: [Bool] = []
    }

    @Test func failedAcceptPausesTheListenerOnceThenResumes() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let autoRead = Switch()
        let handler = AcceptFailureBackoff(
            logger: Logger(label: "test"), pause: .milliseconds(100), setAutoRead: { _, on in autoRead.calls.append(on) })
        try channel.pipeline.syncOperations.addHandler(handler)
        let emfile = IOError(errnoCode: EMFILE, reason: "accept4")

        channel.pipeline.fireErrorCaught(emfile)
        channel.pipeline.fireErrorCaught(emfile)  // while paused: no second timer
        #expect(autoRead.calls == [false])
        loop.advanceTime(by: .milliseconds(99))
        #expect(autoRead.calls == [false])
        loop.advanceTime(by: .milliseconds(1))
        #expect(autoRead.calls == [false, true])

        channel.pipeline.fireErrorCaught(emfile)  // at the limit again: paused again
        #expect(autoRead.calls == [false, true, false])
        loop.advanceTime(by: .milliseconds(100))
        #expect(autoRead.calls == [false, true, false, true])
        #expect(throws: IOError.self) { try channel.throwIfErrorCaught() }  // errors still travel on
    }
}
