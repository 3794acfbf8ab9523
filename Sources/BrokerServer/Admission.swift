import Foundation
import NIOHTTP1

/// Which browsers may talk to the broker: the `Origin` rule for upgrades and the HTTP API
/// (PROTOCOL.md "Origins"), CORS, and the `Host` check that stops DNS rebinding against a
/// loopback listener.
struct OriginPolicy: Sendable {
    /// Lower-cased `scheme://host[:port]` with default ports removed.
    let allowedOrigins: Set<String>
    let allowsAnyOrigin: Bool
    /// Whether `Host` is checked: only when listening on loopback (a public listener is reached by
    /// its public names, which the broker does not know).
    let checksHost: Bool
    /// Host names (lower-cased, port removed) or `name:port` accepted besides loopback ones.
    let allowedHosts: Set<String>
    let allowsAnyHost: Bool

    init(configuration: BrokerConfiguration) {
        let origins = configuration.allowedOrigins.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        allowsAnyOrigin = origins.contains("*")
        allowedOrigins = Set(origins.filter { $0 != "*" }.compactMap(Self.normalizedOrigin))
        checksHost = BrokerConfiguration.isLoopback(configuration.host)
        var hosts = Set(configuration.allowedHosts.map { $0.lowercased() }.filter { !$0.isEmpty && $0 != "*" })
        for origin in allowedOrigins {
            if let authority = Self.authority(ofOrigin: origin) {
                hosts.insert(authority)
                hosts.insert(Self.hostName(authority))
            }
        }
        allowedHosts = hosts
        allowsAnyHost = configuration.allowedHosts.contains("*")
    }

    // MARK: Host

    /// Whether the request's `Host` may reach this listener: any host unless listening on
    /// loopback; there, loopback names and addresses and the configured ones. A request without
    /// `Host` (HTTP/1.0, not a browser) is not checked.
    func isAllowedHost(_ head: HTTPRequestHead) -> Bool {
        guard checksHost, !allowsAnyHost, let host = head.headers.first(name: "Host") else { return true }
        let authority = host.trimmingCharacters(in: .whitespaces).lowercased()
        let name = Self.hostName(authority)
        return BrokerConfiguration.isLoopback(name) || allowedHosts.contains(authority) || allowedHosts.contains(name)
    }

    // MARK: Origin

    /// Whether the request's `Origin` is allowed: listed, `*`, or (with the list empty) the same
    /// origin as the request's `Host`. No `Origin` (not a browser): allowed. Nor is a `ws://` or
    /// `wss://` origin checked: a page's origin is never one (browsers send `http(s)://…` or
    /// `null`), while WebSocket client libraries (swift-websocket's WSClient, which BrokerClient
    /// uses) send the target's `ws://host` without its port.
    func isAllowedOrigin(_ head: HTTPRequestHead) -> Bool {
        guard let origin = head.headers.first(name: "Origin") else { return true }
        let lowered = origin.trimmingCharacters(in: .whitespaces).lowercased()
        if lowered.hasPrefix("ws://") || lowered.hasPrefix("wss://") { return true }
        return isAllowed(origin: origin, host: head.headers.first(name: "Host"))
    }

    func isAllowed(origin: String, host: String?) -> Bool {
        if allowsAnyOrigin { return true }
        guard let normalized = Self.normalizedOrigin(origin) else { return false }
        if allowedOrigins.contains(normalized) { return true }
        guard allowedOrigins.isEmpty, let host, let authority = Self.authority(ofOrigin: normalized) else { return false }
        return authority == Self.withoutDefaultPort(host.trimmingCharacters(in: .whitespaces).lowercased())
    }

    /// CORS headers for a request from an allowed cross-origin page; none for anything else.
    func corsHeaders(_ head: HTTPRequestHead, preflight: Bool) -> HTTPHeaders {
        var headers = HTTPHeaders()
        guard let origin = head.headers.first(name: "Origin"), isAllowed(origin: origin, host: head.headers.first(name: "Host")) else {
            return headers
        }
        headers.add(name: "Access-Control-Allow-Origin", value: origin)
        headers.add(name: "Vary", value: "Origin")
        if preflight {
            headers.add(name: "Access-Control-Allow-Methods", value: "GET, POST, DELETE, OPTIONS")
            headers.add(name: "Access-Control-Allow-Headers", value: "authorization, content-type, x-api-key")
            headers.add(name: "Access-Control-Max-Age", value: "600")
        }
        return headers
    }

    /// `scheme://host[:port]`, lower-cased, default port and trailing slash removed; nil for
    /// anything else (`null`, a path).
    static func normalizedOrigin(_ origin: String) -> String? {
        var text = origin.trimmingCharacters(in: .whitespaces).lowercased()
        while text.hasSuffix("/") { text.removeLast() }
        guard let separator = text.range(of: "://") else { return nil }
        let scheme = text[..<separator.lowerBound]
        var authority = String(text[separator.upperBound...])
        guard !scheme.isEmpty, !authority.isEmpty, !authority.contains("/") else { return nil }
        for (defaultScheme, port) in [("http", ":80"), ("ws", ":80"), ("https", ":443"), ("wss", ":443")]
        where scheme == defaultScheme && authority.hasSuffix(port) {
            authority.removeLast(port.count)
        }
        return "\(scheme)://\(authority)"
    }

    static func authority(ofOrigin normalized: String) -> String? {
        normalized.range(of: "://").map { String(normalized[$0.upperBound...]) }
    }

    /// `host` of `host:port`, `[::1]` of `[::1]:8080` (brackets dropped).
    static func hostName(_ authority: String) -> String {
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return authority }
            return String(authority[authority.index(after: authority.startIndex)..<close])
        }
        if let colon = authority.lastIndex(of: ":"), authority.firstIndex(of: ":") == colon {
            return String(authority[..<colon])
        }
        return authority
    }

    /// A `Host` value compared with an origin's authority: `:80` and `:443` dropped (an origin
    /// never carries its scheme's default port).
    static func withoutDefaultPort(_ host: String) -> String {
        for port in [":80", ":443"] where host.hasSuffix(port) { return String(host.dropLast(port.count)) }
        return host
    }
}

/// Everything decided about a request before it is served: its `Host`, its `Origin` and its
/// credentials. One per server, shared by every connection's handlers.
struct Admission: Sendable {
    let authenticator: Authenticator
    let origins: OriginPolicy

    init(authenticator: Authenticator, configuration: BrokerConfiguration) {
        self.authenticator = authenticator
        self.origins = OriginPolicy(configuration: configuration)
    }

    /// An open broker on loopback that lets everyone in (unit tests of the handlers).
    static func open(_ configuration: BrokerConfiguration = BrokerConfiguration()) -> Admission {
        Admission(authenticator: Authenticator(configuration: configuration, jwt: nil), configuration: configuration)
    }

    enum Verdict {
        case admitted(Identity)
        /// Answer with this status and plain-text reason; never upgrade.
        case refused(HTTPResponseStatus, String, HTTPHeaders)
    }

    static let misdirected = HTTPResponseStatus.custom(code: 421, reasonPhrase: "Misdirected Request")

    /// The `Host` and `Origin` checks, shared by upgrades and the HTTP API.
    func checkBrowser(_ head: HTTPRequestHead) -> Verdict? {
        guard origins.isAllowedHost(head) else {
            return .refused(Self.misdirected, "host not allowed: this listener answers to loopback names only", HTTPHeaders())
        }
        guard origins.isAllowedOrigin(head) else {
            return .refused(.forbidden, "origin not allowed", HTTPHeaders())
        }
        return nil
    }

    /// Whether a WebSocket upgrade may go ahead, and as whom (PROTOCOL.md "Who may connect").
    func upgrade(_ head: HTTPRequestHead, now: Date = Date()) -> Verdict {
        if let refused = checkBrowser(head) { return refused }
        switch authenticator.authenticate(head, now: now) {
        case .success(let identity):
            return .admitted(identity)
        case .failure(let refusal):
            var headers = HTTPHeaders()
            headers.add(name: "WWW-Authenticate", value: #"Bearer realm="broker""#)
            return .refused(.unauthorized, "unauthorized: \(refusal.reason)", headers)
        }
    }
}
