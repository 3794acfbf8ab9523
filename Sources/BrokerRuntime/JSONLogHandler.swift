import BrokerProtocol
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// A swift-log handler that writes one JSON object per line (`log.format: json`):
/// `{"ts":"2026-11-26T05:00:00.123Z","level":"info","label":"broker","msg":"listening","address":"…"}`.
/// Metadata values become strings; keys `ts`, `level`, `label`, `msg` are reserved.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// Writes to standard error.
    public static func standardError(label: String) -> JSONLogHandler {
        JSONLogHandler(label: label) { line in
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    public init(label: String, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        write(Self.format(
            level: event.level, message: event.message, metadata: merged(event.metadata), label: label,
            date: Date()))
    }

    private func merged(_ explicit: Logger.Metadata?) -> Logger.Metadata {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit { all.merge(explicit) { $1 } }
        return all
    }

    /// One log line (with its newline).
    static func format(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata, label: String, date: Date) -> String {
        var out = ByteBuffer()
        out.writeStaticString(#"{"ts":""#)
        out.writeString(timestamp(date))
        out.writeStaticString(#"","level":""#)
        out.writeString(level.rawValue)
        out.writeStaticString(#"","label":"#)
        out.writeJSONString(label)
        out.writeStaticString(#","msg":"#)
        out.writeJSONString(message.description)
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) where !["ts", "level", "label", "msg"].contains(key) {
            out.writeStaticString(",")
            out.writeJSONString(key)
            out.writeStaticString(":")
            out.writeJSONString(value.description)
        }
        out.writeStaticString("}\n")
        return String(buffer: out)
    }

    static func timestamp(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1, Int(parts.tm_mday),
            Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), Int(milliseconds % 1000))
    }
}
