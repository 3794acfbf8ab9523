import Logging
import NIOCore

/// Logs the listener's errors, at most once per `interval`, with how many it left out.
///
/// An `accept` that fails because the broker is out of descriptors (EMFILE) or the host is
/// (ENFILE) leaves the connection in the kernel's accept queue, so the listening socket stays
/// readable and NIO retries at once: one event loop spins at 100 % CPU (NIO 2.x leaves the
/// read pending after a failed accept, so `AcceptBackoffHandler` never gets a `read` to delay)
/// until a descriptor is free. Without this handler nothing says so.
final class AcceptErrorLogger: ChannelInboundHandler {
    typealias InboundIn = any Channel

    private let logger: Logger
    private let interval: TimeAmount
    private var lastLogged: NIODeadline?
    private var suppressed = 0

    init(logger: Logger, interval: TimeAmount = .seconds(10)) {
        self.logger = logger
        self.interval = interval
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let now = NIODeadline.now()
        if let lastLogged, now - lastLogged < interval {
            suppressed += 1
        } else {
            logger.warning(
                "accept failed (at the open file limit? see RLIMIT_NOFILE at start-up)",
                metadata: ["error": "\(error)", "suppressed": "\(suppressed)"])
            lastLogged = now
            suppressed = 0
        }
        context.fireErrorCaught(error)
    }
}
