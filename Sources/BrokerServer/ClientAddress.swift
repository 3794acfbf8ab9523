import Foundation
import NIOCore
import NIOHTTP1

/// An IP address or a CIDR block (`10.0.0.0/8`, `192.168.1.7`, `fd00::/8`, `::1`): an entry of
/// `http.trusted-proxies`.
public struct AddressBlock: Sendable, Equatable, CustomStringConvertible {
    /// The network's bytes (4 for IPv4, 16 for IPv6) and how many leading bits must match.
    let bytes: [UInt8]
    let prefixLength: Int
    public let description: String

    /// Parses `text`; nil when it is not an address or a block.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let bytes = AddressBlock.bytes(ofIP: String(parts[0])) else { return nil }
        let maxLength = bytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard let given = Int(parts[1]), (0...maxLength).contains(given) else { return nil }
            length = given
        }
        self.bytes = bytes
        self.prefixLength = length
        self.description = text
    }

    /// Whether the address `ip` (text) is in this block. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) counts as its IPv4 address.
    public func contains(_ ip: String) -> Bool {
        guard var candidate = AddressBlock.bytes(ofIP: ip) else { return false }
        if candidate.count == 16, bytes.count == 4, candidate.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] {
            candidate = Array(candidate.suffix(4))
        }
        guard candidate.count == bytes.count else { return false }
        var remaining = prefixLength
        for index in bytes.indices where remaining > 0 {
            let bits = min(8, remaining)
            let mask = UInt8(truncatingIfNeeded: 0xFF << (8 - bits))
            if candidate[index] & mask != bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    /// The bytes of an IPv4 or IPv6 address in text, or nil.
    static func bytes(ofIP text: String) -> [UInt8]? {
        guard !text.isEmpty, let address = try? SocketAddress(ipAddress: text, port: 0) else { return nil }
        switch address {
        case .v4(let v4):
            return withUnsafeBytes(of: v4.address.sin_addr) { Array($0) }
        case .v6(let v6):
            return withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        default:
            return nil
        }
    }
}

/// Who a request comes from: the TCP peer, or, when the peer is a trusted proxy, the client that
/// proxy names in `X-Forwarded-For` (else `Forwarded: for=`). Used for logs, the per-IP connection
/// limit and `/api/connections`' `remoteAddress`.
///
/// With no trusted proxies (the default) the headers are never read: anyone can send them.
/// `X-Forwarded-For` is read from the right: each proxy appends the address it saw, so the
/// rightmost entry that is not itself a trusted proxy is the client (entries further left were
/// written by the client and prove nothing).
public enum ClientAddress {
    /// The client's IP address for a request from `peer` with `headers`; nil when the peer has
    /// no IP address (a Unix socket) and no trusted proxy named one.
    public static func resolve(peer: SocketAddress?, headers: HTTPHeaders, trustedProxies: [AddressBlock]) -> String? {
        let peerIP = peer?.ipAddress
        guard let peerIP, !trustedProxies.isEmpty, isTrusted(peerIP, trustedProxies) else { return peerIP }
        let chain = forwardedChain(headers)
        for candidate in chain.reversed() {
            guard AddressBlock.bytes(ofIP: candidate) != nil else { return peerIP }  // garbage: trust none of it
            if !isTrusted(candidate, trustedProxies) { return candidate }
        }
        // Every hop is a trusted proxy: the leftmost is the furthest we can see.
        return chain.first ?? peerIP
    }

    static func isTrusted(_ ip: String, _ proxies: [AddressBlock]) -> Bool {
        proxies.contains { $0.contains(ip) }
    }

    /// The addresses the proxies recorded, client first: `X-Forwarded-For` if present, else the
    /// `for=` parameters of `Forwarded` (RFC 7239; quotes, brackets and ports removed).
    static func forwardedChain(_ headers: HTTPHeaders) -> [String] {
        let xff = headers["X-Forwarded-For"].flatMap { $0.split(separator: ",") }
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if !xff.isEmpty { return xff }
        var chain: [String] = []
        for element in headers["Forwarded"].flatMap({ $0.split(separator: ",") }) {
            for pair in element.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces).lowercased() == "for" else { continue }
                chain.append(node(String(parts[1]).trimmingCharacters(in: .whitespaces)))
            }
        }
        return chain
    }

    /// `"[2001:db8::1]:4711"` → `2001:db8::1`, `192.0.2.1:80` → `192.0.2.1`, `"_hidden"` stays.
    static func node(_ value: String) -> String {
        var text = Substring(value)
        if text.hasPrefix("\""), text.hasSuffix("\""), text.count >= 2 { text = text.dropFirst().dropLast() }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return String(text) }
            return String(text[text.index(after: text.startIndex)..<close])
        }
        if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") { return String(text[..<colon]) }
        return String(text)
    }
}
