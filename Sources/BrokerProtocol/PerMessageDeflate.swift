/// Server side of the permessage-deflate negotiation (RFC 7692 §5 and §7.1).
///
/// The broker compresses a publish once and shares that frame with every subscriber, so it always
/// answers `server_no_context_takeover`: each message is compressed from a fresh state and any
/// client can inflate it on its own. It also always answers `client_no_context_takeover` (which
/// §7.1.1.2 allows even when not offered): the client then compresses each message on its own,
/// so the broker needs inflate state only while a compressed message is arriving, never for an
/// idle connection. A pure value: the upgrade handler passes the request's header lines in and
/// puts `responseHeader` on the 101.
public enum PerMessageDeflate {
    public static let extensionName = "permessage-deflate"

    /// What was agreed with one client.
    public struct Agreement: Equatable, Sendable {
        /// The largest LZ77 window the server may use towards the client (RFC 7692 §7.1.2.1).
        /// Frames are compressed with a 2^15 window; when this is smaller, a message longer than
        /// 2^bits bytes is sent uncompressed (a shorter one cannot reach further back).
        public var serverMaxWindowBits: Int
        /// The largest window the client may use: the inflater's window (§7.1.2.2).
        public var clientMaxWindowBits: Int
        /// Whether the response names `server_max_window_bits` / `client_max_window_bits`.
        var echoServerMaxWindowBits: Bool
        var echoClientMaxWindowBits: Bool

        /// The `Sec-WebSocket-Extensions` value of the 101 response.
        public var responseHeader: String {
            var header = PerMessageDeflate.extensionName + "; server_no_context_takeover; client_no_context_takeover"
            if echoServerMaxWindowBits { header += "; server_max_window_bits=\(serverMaxWindowBits)" }
            if echoClientMaxWindowBits { header += "; client_max_window_bits=\(clientMaxWindowBits)" }
            return header
        }

        /// The largest message (uncompressed) that a frame compressed with a 2^15 window may
        /// carry to this client: any distance in it is shorter than the message.
        public var maxSharedFrameMessageBytes: Int {
            serverMaxWindowBits >= 15 ? Int.max : 1 << serverMaxWindowBits
        }
    }

    /// The first acceptable permessage-deflate offer among `headerLines` (every
    /// `Sec-WebSocket-Extensions` line of the request, in order), or nil: no compression.
    public static func negotiate(headerLines: [String]) -> Agreement? {
        for element in ExtensionHeader.parse(headerLines) {
            guard let element, element.name == extensionName else { continue }
            if let agreement = accept(element.parameters) { return agreement }
        }
        return nil
    }

    /// Accepts one offer, or declines it (nil) when a parameter is unknown, repeated or has a
    /// bad value (§7.1), or when it asks for a window this server cannot produce.
    static func accept(_ parameters: [(name: String, value: String?)]) -> Agreement? {
        var agreement = Agreement(
            serverMaxWindowBits: 15, clientMaxWindowBits: 15,
            echoServerMaxWindowBits: false, echoClientMaxWindowBits: false)
        var seen = Set<String>()
        for (name, value) in parameters {
            guard seen.insert(name).inserted else { return nil }
            switch name {
            case "server_no_context_takeover", "client_no_context_takeover":
                guard value == nil else { return nil }
            case "server_max_window_bits":
                guard let value, let bits = windowBits(value) else { return nil }
                // zlib cannot deflate with a 256-byte window (it silently uses 512).
                guard bits >= 9 else { return nil }
                agreement.serverMaxWindowBits = bits
                agreement.echoServerMaxWindowBits = true
            case "client_max_window_bits":
                // Without a value the client only says it supports the parameter; we take the
                // default window then, and name it only when the client promised a smaller one.
                if let value {
                    guard let bits = windowBits(value) else { return nil }
                    agreement.clientMaxWindowBits = bits
                    agreement.echoClientMaxWindowBits = true
                }
            default:
                return nil
            }
        }
        return agreement
    }

    /// A window size: a decimal 8...15 without leading zeros (§7.1.2).
    static func windowBits(_ value: String) -> Int? {
        guard value.utf8.count <= 2, value.first != "0", value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let bits = Int(value), (8...15).contains(bits)
        else { return nil }
        return bits
    }
}
