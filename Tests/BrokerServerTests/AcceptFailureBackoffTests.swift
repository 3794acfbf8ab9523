import Foundation
import Logging
import NIOConcurrencyHelpers
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

    /// Keeps each log message's `suppressed` metadata.
    struct Recording: LogHandler {
        let lines: NIOLockedValueBox<[String]>
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.withLockedValue { $0.append("suppressed=\(event.metadata?["suppressed"] ?? "?")") }
        }
    }

    @Test func failuresAreLoggedOncePerIntervalOnTheLoopsClock() throws {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let lines = NIOLockedValueBox<[String]>([])
        let handler = AcceptFailureBackoff(
            logger: Logger(label: "test") { _ in Recording(lines: lines) }, pause: .milliseconds(100),
            logInterval: .seconds(10), setAutoRead: { _, _ in })
        try channel.pipeline.syncOperations.addHandler(handler)
        let emfile = IOError(errnoCode: EMFILE, reason: "accept4")
        loop.advanceTime(by: .seconds(1))  // the embedded clock starts at zero

        channel.pipeline.fireErrorCaught(emfile)
        for _ in 0..<3 {
            loop.advanceTime(by: .seconds(3))
            channel.pipeline.fireErrorCaught(emfile)  // within 10 s of the logged one: counted
        }
        #expect(lines.withLockedValue { $0 } == ["suppressed=0"])
        loop.advanceTime(by: .seconds(1) - .nanoseconds(1))
        channel.pipeline.fireErrorCaught(emfile)
        #expect(lines.withLockedValue { $0 } == ["suppressed=0"])
        loop.advanceTime(by: .nanoseconds(1))
        channel.pipeline.fireErrorCaught(emfile)  // 10 s after the logged one
        #expect(lines.withLockedValue { $0 } == ["suppressed=0", "suppressed=4"])
        _ = try? channel.throwIfErrorCaught()
    }
}
