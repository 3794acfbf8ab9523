import BrokerClient
import BrokerProtocol
import Foundation
import NIOCore

/// How a received message is printed: `subscribe` and `retained ls` share it.
enum OutputFormat: Equatable {
    /// One JSON object per line (`BrokerMessage.jsonLine`), the default.
    case jsonLine
    /// The payload only: a JSON string's text unescaped, other JSON as published, binary bytes as-is.
    case raw
    /// A user's template, e.g. `{topic} {data} {offset}`.
    case template(FormatTemplate)

    /// The bytes to write for `message`, including the final newline.
    func render(_ message: BrokerMessage, epoch: String?) -> [UInt8] {
        var out: [UInt8]
        switch self {
        case .jsonLine: out = Array(message.jsonLine.utf8)
        case .raw: out = FormatTemplate.payloadText(message)
        case .template(let template): out = template.render(message, epoch: epoch)
        }
        out.append(UInt8(ascii: "\n"))
        return out
    }
}

/// A `--format` template: text with placeholders in braces, `{{` and `}}` for literal braces,
/// and the escapes `\n`, `\t` and `\\`.
///
/// Placeholders: `{topic}`; `{data}` (the JSON as published, base64 for a binary message);
/// `{text}` (what `--raw` prints); `{offset}` (empty when the message was not retained);
/// `{replay}` (`true`/`false`); `{binary}` (`true`/`false`); `{bytes}` (payload size);
/// `{epoch}` (the journal epoch of the connection, for resuming with `--since`/`--epoch`);
/// `{json}` (the default JSON line).
struct FormatTemplate: Equatable {
    enum Field: String, CaseIterable {
        case topic, data, text, offset, replay, binary, bytes, epoch, json
    }

    enum Part: Equatable {
        case literal(String)
        case field(Field)
    }

    struct ParseError: Error, Equatable, CustomStringConvertible {
        var description: String
    }

    let parts: [Part]

    init(parsing template: String) throws(ParseError) {
        var parts: [Part] = []
        var literal = ""
        var index = template.startIndex
        func flush() {
            if !literal.isEmpty { parts.append(.literal(literal)) }
            literal = ""
        }
        while index < template.endIndex {
            let character = template[index]
            let next = template.index(after: index)
            let following = next < template.endIndex ? template[next] : nil
            switch (character, following) {
            case ("{", "{"):
                literal.append("{")
                index = template.index(after: next)
            case ("}", "}"):
                literal.append("}")
                index = template.index(after: next)
            case ("\\", "n"):
                literal.append("\n")
                index = template.index(after: next)
            case ("\\", "t"):
                literal.append("\t")
                index = template.index(after: next)
            case ("\\", "\\"):
                literal.append("\\")
                index = template.index(after: next)
            case ("{", _):
                guard let close = template[next...].firstIndex(of: "}") else {
                    throw ParseError(description: "unclosed '{' in format \(template)")
                }
                let name = String(template[next..<close])
                guard let field = Field(rawValue: name) else {
                    let known = Field.allCases.map { "{\($0.rawValue)}" }.joined(separator: " ")
                    throw ParseError(description: "unknown placeholder {\(name)} in format (known: \(known))")
                }
                flush()
                parts.append(.field(field))
                index = template.index(after: close)
            case ("}", _):
                throw ParseError(description: "lone '}' in format \(template) (write }} for a brace)")
            default:
                literal.append(character)
                index = next
            }
        }
        flush()
        self.parts = parts
    }

    func render(_ message: BrokerMessage, epoch: String?) -> [UInt8] {
        var out: [UInt8] = []
        for part in parts {
            switch part {
            case .literal(let text): out += text.utf8
            case .field(let field): out += Self.value(of: field, in: message, epoch: epoch)
            }
        }
        return out
    }

    static func value(of field: Field, in message: BrokerMessage, epoch: String?) -> [UInt8] {
        switch field {
        case .topic: return Array(message.topic.utf8)
        case .data: return message.isBinary ? Array(message.data.base64EncodedString().utf8) : message.bytes
        case .text: return payloadText(message)
        case .offset: return message.offset.map { Array(String($0).utf8) } ?? []
        case .replay: return Array((message.replay ? "true" : "false").utf8)
        case .binary: return Array((message.isBinary ? "true" : "false").utf8)
        case .bytes: return Array(String(message.payload.readableBytes).utf8)
        case .epoch: return Array((epoch ?? "").utf8)
        case .json: return Array(message.jsonLine.utf8)
        }
    }

    /// The payload as a script wants it: a JSON string unescaped, other JSON verbatim, binary raw.
    static func payloadText(_ message: BrokerMessage) -> [UInt8] {
        if message.isBinary { return message.bytes }
        if let string = message.string { return Array(string.utf8) }
        return message.bytes
    }
}
