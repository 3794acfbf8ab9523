import ArgumentParser
import BrokerClient
import BrokerProtocol
import Foundation
import NIOCore

/// `broker-cli retained ls FILTER`: the retained messages the journal keeps (`GET /api/retained`).
struct Retained: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Look at the broker's retained messages (HTTP API).",
        subcommands: [List.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "Print the retained messages of the topics a filter matches, in offset order.",
            discussion: """
                Lines as `subscribe` prints them (also --raw and --format; {epoch} is the journal's). \
                Reads GET /api/retained page by page on the HTTP API, whose URL is derived from the \
                WebSocket URL (ws://h:p/ws → http://h:p) unless --api-url gives it. Authorized by \
                --api-key (else $BROKER_API_KEY, the context's API key, or the token).
                """)

        @Argument(help: "Topic filter, e.g. 'sensors/#'.")
        var filter: String

        @Option(help: "Only messages after this offset.")
        var since: UInt64 = 0

        @Option(help: "Print at most this many messages (default: all).")
        var limit: Int?

        @OptionGroup var output: OutputOptions
        @OptionGroup var api: APIOptions
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            if let limit, limit < 1 { throw ValidationError("--limit must be ≥ 1") }
            do { try Topic.validateFilter(filter) } catch { throw ValidationError("invalid topic filter '\(filter)': \(error)") }
        }

        func run() async throws {
            let settings = connection.settings(api: api)
            let format = output.outputFormat()
            var after = since
            var remaining = limit ?? Int.max
            while remaining > 0 {
                let query = "/api/retained?topic=\(Self.percentEncoded(filter))&since=\(after)&limit=\(min(remaining, 1000))"
                let response = await APIOptions.get(query, settings: settings, connection: connection)
                let page: RetainedPage
                do {
                    page = try RetainedPage(json: response.body)
                } catch {
                    fail(.brokerError, "GET /api/retained: unexpected answer: \(error)")
                }
                for message in page.messages.prefix(remaining) {
                    emit(bytes: format.render(message, epoch: page.epoch))
                }
                remaining -= page.messages.count
                guard let next = page.next, !page.messages.isEmpty else { break }
                after = next
            }
        }

        /// A query value: everything but unreserved characters percent-encoded (`#` → `%23`, `+` → `%2B`).
        static func percentEncoded(_ value: String) -> String {
            var out = ""
            for byte in value.utf8 {
                switch byte {
                case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                     UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                     UInt8(ascii: "~"), UInt8(ascii: "/"):
                    out.append(Character(Unicode.Scalar(byte)))
                default:
                    out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
                }
            }
            return out
        }
    }
}

/// One answer of `GET /api/retained`: `{"epoch":..,"messages":[{"topic","offset","data"|"binary"}],"next":..}`.
/// Each message's `data` is kept as the JSON text the broker sent (not re-encoded).
struct RetainedPage {
    var epoch: String?
    var messages: [BrokerMessage] = []
    var next: UInt64?

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    init(json: [UInt8]) throws {
        try json.withUnsafeBytes { bytes in
            let top = try Self.fields(of: bytes, in: 0..<bytes.count)
            if let epoch = top["epoch"], let text = Self.string(bytes, epoch) { self.epoch = text }
            if let next = top["next"] { self.next = UInt64(String(decoding: bytes[next], as: UTF8.self)) }
            guard let list = top["messages"] else { throw Malformed(description: "no messages") }
            for element in try Self.elements(of: bytes, in: list) {
                let fields = try Self.fields(of: bytes, in: element)
                guard let topicRange = fields["topic"], let topic = Self.string(bytes, topicRange) else {
                    throw Malformed(description: "a message without topic")
                }
                let offset = fields["offset"].flatMap { UInt64(String(decoding: bytes[$0], as: UTF8.self)) }
                if let data = fields["data"] {
                    messages.append(BrokerMessage(topic: topic, payload: ByteBuffer(bytes: bytes[data]), isBinary: false, offset: offset))
                } else if let binary = fields["binary"], let text = Self.string(bytes, binary),
                          let decoded = Data(base64Encoded: text) {
                    messages.append(BrokerMessage(topic: topic, payload: ByteBuffer(bytes: decoded), isBinary: true, offset: offset))
                } else {
                    throw Malformed(description: "a message without data or binary")
                }
            }
        }
    }

    private static func string(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String? {
        guard bytes[range.lowerBound] == UInt8(ascii: "\"") else { return nil }
        return JSONScanner.decodeString(bytes, range)
    }

    /// The value ranges of an object's fields.
    private static func fields(of bytes: UnsafeRawBufferPointer, in range: Range<Int>) throws -> [String: Range<Int>] {
        var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: bytes[range]))
        var fields: [String: Range<Int>] = [:]
        scanner.skipWhitespace()
        try scanner.expect(UInt8(ascii: "{"))
        scanner.skipWhitespace()
        if scanner.consume(UInt8(ascii: "}")) { return fields }
        repeat {
            scanner.skipWhitespace()
            let key = try scanner.scanValue()
            guard key.kind == .string else { throw Malformed(description: "a key that is not a string") }
            scanner.skipWhitespace()
            try scanner.expect(UInt8(ascii: ":"))
            scanner.skipWhitespace()
            let value = try scanner.scanValue()
            let shift = range.lowerBound
            let name = JSONScanner.decodeString(bytes, (key.range.lowerBound + shift)..<(key.range.upperBound + shift))
            fields[name] = (value.range.lowerBound + shift)..<(value.range.upperBound + shift)
            scanner.skipWhitespace()
        } while scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "}"))
        return fields
    }

    /// The value ranges of an array's elements.
    private static func elements(of bytes: UnsafeRawBufferPointer, in range: Range<Int>) throws -> [Range<Int>] {
        var scanner = JSONScanner(UnsafeRawBufferPointer(rebasing: bytes[range]))
        var elements: [Range<Int>] = []
        scanner.skipWhitespace()
        try scanner.expect(UInt8(ascii: "["))
        scanner.skipWhitespace()
        if scanner.consume(UInt8(ascii: "]")) { return elements }
        repeat {
            scanner.skipWhitespace()
            let value = try scanner.scanValue()
            elements.append((value.range.lowerBound + range.lowerBound)..<(value.range.upperBound + range.lowerBound))
            scanner.skipWhitespace()
        } while scanner.consume(UInt8(ascii: ","))
        try scanner.expect(UInt8(ascii: "]"))
        return elements
    }
}

/// `broker-cli stats`: the broker's figures (`GET /api/stats`).
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the broker's traffic, connection and journal figures (GET /api/stats, one JSON object).",
        discussion: """
            An operator route: it needs the API key (--api-key, else $BROKER_API_KEY, else the \
            context's) or an admin token (--token) when the broker has credentials configured. \
            With an admin listener, give its URL with --api-url.
            """)

    @OptionGroup var api: APIOptions
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let settings = connection.settings(api: api)
        let response = await APIOptions.get("/api/stats", settings: settings, connection: connection)
        emit(response.text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
