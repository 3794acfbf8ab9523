import Logging
import NIOConcurrencyHelpers

/// Keeps every log record a logger made, for tests that check log lines.
package final class LogCapture: Sendable {
    package struct Record: Sendable {
        package var level: Logger.Level
        package var message: String
        package var metadata: [String: String]
    }

    private let records = NIOLockedValueBox<[Record]>([])

    package init() {}

    /// A logger at `level` whose records land here.
    package func logger(_ label: String = "captured", level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: label) { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    package var all: [Record] { records.withLockedValue { $0 } }

    /// The records whose message is `message`.
    package func records(_ message: String) -> [Record] { all.filter { $0.message == message } }

    fileprivate func append(_ record: Record) { records.withLockedValue { $0.append(record) } }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = metadata
            if let extra = event.metadata { merged.merge(extra) { $1 } }
            capture.append(Record(
                level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}
