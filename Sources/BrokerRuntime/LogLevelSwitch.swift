import Logging
import NIOConcurrencyHelpers

/// The process's log level, changeable while it runs (`log.level` on SIGHUP). Every logger made
/// through `handler(_:)` reads it on each log call: swift-log asks `Logger.logLevel`, which is
/// its handler's, before it formats anything.
public final class LogLevelSwitch: Sendable {
    private let current: NIOLockedValueBox<Logger.Level>

    public init(_ level: Logger.Level) {
        current = NIOLockedValueBox(level)
    }

    public var level: Logger.Level {
        get { current.withLockedValue { $0 } }
        set { current.withLockedValue { $0 = newValue } }
    }

    /// `handler`, with this switch's level in place of its own.
    public func handler(_ handler: some LogHandler) -> some LogHandler {
        SwitchedLevelLogHandler(wrapped: handler, levelSwitch: self)
    }
}

/// A handler whose level is its `LogLevelSwitch`'s; writing is the wrapped handler's.
struct SwitchedLevelLogHandler<Wrapped: LogHandler>: LogHandler {
    var wrapped: Wrapped
    let levelSwitch: LogLevelSwitch
    /// Set on this copy (`logger.logLevel = ...`, e.g. a quieter logger for a library): that
    /// copy keeps it, as with any swift-log handler.
    private var fixedLevel: Logger.Level?

    init(wrapped: Wrapped, levelSwitch: LogLevelSwitch) {
        self.wrapped = wrapped
        // swift-log filters before the handler; the wrapped one must not filter again.
        self.wrapped.logLevel = .trace
        self.levelSwitch = levelSwitch
    }

    var logLevel: Logger.Level {
        get { fixedLevel ?? levelSwitch.level }
        set { fixedLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    var metadataProvider: Logger.MetadataProvider? {
        get { wrapped.metadataProvider }
        set { wrapped.metadataProvider = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        wrapped.log(event: event)
    }
}
