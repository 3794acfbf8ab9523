import Logging
import NIOCore

/// Pauses the listener for a moment after a failed `accept`, and logs the failures, at most once
/// per `logInterval`, with how many it left out.
///
/// An `accept` that fails because the broker is out of descriptors (EMFILE) or the host is
/// (ENFILE) leaves the connection in the kernel's accept queue, so the listening socket stays
/// readable and NIO retries at once: one event loop spun at 100 % CPU, 400,000 failed accepts a
/// second, until a descriptor was free. (NIO leaves the read pending after a failed accept, so
/// its own `AcceptBackoffHandler` never gets a `read` to delay.) Turning `autoRead` off takes the
/// listener out of the selector; it is turned back on after `pause`. Waiting clients stay in the
/// accept queue meanwhile, as with any server at its limit.
final class AcceptFailureBackoff: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let logger: Logger
    private let pause: TimeAmount
    private let logInterval: TimeAmount
    private let setAutoRead: (ChannelHandlerContext, Bool) -> Void
    private var lastLogged: NIODeadline?
    private var suppressed = 0
    private(set) var paused = false

    /// `setAutoRead` is the listener's `autoRead` option; tests replace it (EmbeddedChannel
    /// ignores the option).
    init(
        logger: Logger, pause: TimeAmount = .milliseconds(100), logInterval: TimeAmount = .seconds(10),
        setAutoRead: @escaping (ChannelHandlerContext, Bool) -> Void = { context, on in
            _ = try? context.channel.syncOptions?.setOption(.autoRead, value: on)
        }
    ) {
        self.logger = logger
        self.pause = pause
        self.logInterval = logInterval
        self.setAutoRead = setAutoRead
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let now = context.eventLoop.now
        if let lastLogged, now - lastLogged < logInterval {
            suppressed += 1
        } else {
            logger.warning(
                "accept failed (at the open file limit? see RLIMIT_NOFILE at start-up); pausing the listener",
                metadata: ["error": "\(error)", "suppressed": "\(suppressed)", "pause_ms": "\(pause.nanoseconds / 1_000_000)"])
            lastLogged = now
            suppressed = 0
        }
        if !paused {
            paused = true
            setAutoRead(context, false)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: pause) {
                handler.value.paused = false
                handler.value.setAutoRead(bound.value, true)
            }
        }
        context.fireErrorCaught(error)
    }
}
