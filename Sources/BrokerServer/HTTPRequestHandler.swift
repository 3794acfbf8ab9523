import BrokerJournal
import BrokerProtocol
import Foundation
import NIOCore
import NIOHTTP1

/// Answers the plain HTTP requests on a broker listener that are not WebSocket upgrades
/// (docs/http-api.md, docs/openapi.yaml). The routes are listed in `HTTPRoute` and served in the
/// extensions beside this file: the client API (`+ClientRoutes`), the operator API
/// (`+OperatorRoutes`) and the dashboard's files (`+Dashboard`).
///
/// `/api/*` and `/metrics` need the API key when one is configured; the operator routes also take
/// a JWT with `"admin": true`, and need one of the two whenever an API key or a JWT key is
/// configured; `POST /api/publish` and `GET`/`DELETE /api/retained` also take a client's
/// credentials (a JWT within its permissions, a client token) whenever any credential is
/// configured. With an admin listener (`ListenerRole`), the operator routes and the dashboard are
/// served there only and answer 404 on the public listener. Browsers: a request from a foreign
/// `Origin` gets 403 and no CORS headers, one from an allowed origin its CORS headers; on a
/// loopback listener a `Host` that is not a loopback name gets 421 (DNS rebinding). Every error is
/// a JSON body `{"error":{"code":…,"message":…}}`. A body is collected up to its route's limit and
/// refused with 413 as soon as the declared or received length passes it. A connection that takes
/// longer than the idle timeout to send a request (or sits idle between requests) is closed.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "http-requests"

    private enum State {
        /// Waiting for a request head.
        case idle
        /// Collecting the body of `head`, up to `limit` bytes.
        case receiving(head: HTTPRequestHead, body: ByteBuffer, limit: Int)
        /// The request was answered early (413); the rest of it is dropped and the connection
        /// closes once the answer is written.
        case refused
        /// The request is complete and being answered.
        case responding
    }

    let broker: Broker
    let server: ServerHooks
    private let webSocketPaths: Set<String>
    /// Which routes this listener serves.
    let role: ListenerRole
    /// Set by the upgrader when it refused a WebSocket upgrade for a connection limit.
    private let upgradeRefusal: NIOLoopBound<UpgradeRefusal>?
    private var state = State.idle
    private var idleTimer: Scheduled<Void>?
    /// What the current request's credentials permit (publish and retained endpoints), decided
    /// at its head.
    var permissions = Permissions.everything
    /// CORS headers for the current request's answer (an allowed cross-origin page), else empty.
    private var cors = HTTPHeaders()
    /// Bytes of the current request's body taken from `broker.httpBodyBudget`.
    private var reservedBodyBytes = 0
    /// This connection's loop's shard, where refused upgrades are counted (from `handlerAdded`).
    private var shard: FanoutShard?
    /// When the current request's head arrived, for the access log.
    private var requestStartedAt = NIODeadline.now()

    init(
        broker: Broker, server: ServerHooks, webSocketPaths: Set<String>, role: ListenerRole = .combined,
        upgradeRefusal: NIOLoopBound<UpgradeRefusal>? = nil
    ) {
        self.broker = broker
        self.server = server
        self.webSocketPaths = webSocketPaths
        self.role = role
        self.upgradeRefusal = upgradeRefusal
        self.configuration = broker.currentConfiguration
    }

    /// The configuration in force when the connection was accepted (a reload applies to the
    /// connections accepted after it).
    let configuration: BrokerConfiguration

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        shard = broker.shards.first { $0.eventLoop === context.eventLoop }
        armIdleTimer(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        shard = nil
        idleTimer?.cancel()
        idleTimer = nil
        releaseBody()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), _):
            requestStartedAt = context.eventLoop.now
            releaseBody()
            if let refusal = refusal(of: head) {
                refuse(context, head, refusal)
                return
            }
            let declared = Self.declaredLength(head)
            guard httpBodyBudget.take(declared) else {
                refuse(context, head, .busy)
                return
            }
            reservedBodyBytes = declared
            state = .receiving(head: head, body: context.channel.allocator.buffer(capacity: 0), limit: bodyLimit(for: head))
        case (.body(var chunk), .receiving(let head, var body, let limit)):
            guard body.readableBytes + chunk.readableBytes <= limit else {
                refuse(context, head, .tooLarge(limit: limit))
                return
            }
            // A chunked body (or one longer than declared) takes from the budget as it comes.
            let needed = body.readableBytes + chunk.readableBytes - reservedBodyBytes
            if needed > 0 {
                guard httpBodyBudget.take(needed) else {
                    refuse(context, head, .busy)
                    return
                }
                reservedBodyBytes += needed
            }
            state = .responding  // drop the reference while appending (no copy-on-write)
            body.writeBuffer(&chunk)
            state = .receiving(head: head, body: body, limit: limit)
        case (.end, .receiving(let head, let body, _)):
            state = .responding
            idleTimer?.cancel()
            route(head, body: body, context: context)
        case (.body, _), (.end, _):
            break  // the rest of a refused request
        }
    }

    /// Why a request is refused from its head alone, before a byte of its body is taken: the API
    /// key, a body where none belongs, a declared length over the route's limit.
    private enum Refusal {
        /// A loopback listener asked for under a name that is not loopback (DNS rebinding).
        case misdirected
        /// A browser page from an origin not in `auth.allowed-origins`.
        case originNotAllowed
        case unauthorized(String)
        case bodyNotAllowed(HTTPMethod)
        case tooLarge(limit: Int)
        /// The budget of body bytes in flight (`maxHTTPBodyBytesInFlight`) is spent.
        case busy
    }

    /// The route of `path` if this listener serves it (nil: 404).
    private func servedRoute(_ path: String) -> HTTPRoute? {
        HTTPRoute(path: path, webSocketPaths: webSocketPaths).flatMap { role.serves($0) ? $0 : nil }
    }

    private func refusal(of head: HTTPRequestHead) -> Refusal? {
        let (path, _) = Self.split(head.uri)
        let route = servedRoute(path)
        let admission = server.admission
        cors = HTTPHeaders()
        permissions = .everything
        // DNS rebinding: a loopback listener answers to loopback names only (the probes, which
        // say nothing, excepted).
        guard route?.audience == .probe || admission.origins.isAllowedHost(head) else {
            if route == .webSocket, Self.isUpgradeRequest(head) { countUpgradeRefusal(.host) }
            return .misdirected
        }
        // A route this listener hides (the operator's, beside an admin listener) is simply not
        // here: 404 whatever the credentials.
        let hidden = route == nil && HTTPRoute(path: path, webSocketPaths: webSocketPaths) != nil
        if Self.isProtected(path), !hidden {
            // A page from a foreign origin gets nothing (CSRF: not even a text/plain POST).
            guard admission.origins.isAllowedOrigin(head) else { return .originNotAllowed }
            cors = admission.origins.corsHeaders(head, preflight: head.method == .OPTIONS)
            // A preflight carries no credentials (browsers never send them on one).
            if head.method != .OPTIONS, !isAPIKey(head) {
                if route?.audience == .client, configuration.hasCredentials {
                    switch admission.authenticator.authenticate(credential: Self.credential(of: head)) {
                    case .success(let identity): permissions = identity.permissions
                    case .failure(let refusal): return .unauthorized(refusal.reason)
                    }
                } else if isOperatorAccessGuarded, !isAdminToken(head) {
                    return .unauthorized("missing or wrong API key or admin token")
                }
            }
        }
        let declared = Self.declaredLength(head)
        let chunked = head.headers.contains(name: "Transfer-Encoding")
        switch head.method {
        case .GET, .HEAD, .DELETE, .OPTIONS, .TRACE:
            if declared > 0 || chunked { return .bodyNotAllowed(head.method) }
        default:
            break
        }
        let limit = bodyLimit(for: head)
        if declared > limit { return .tooLarge(limit: limit) }
        return nil
    }

    /// Answers `refusal` and closes the connection once the answer is written; the rest of the
    /// request is dropped unread.
    private func refuse(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ refusal: Refusal) {
        state = .refused
        idleTimer?.cancel()
        switch refusal {
        case .misdirected:
            respond(
                context, head, Admission.misdirected, text: "host not allowed: this listener answers to loopback names only\n",
                close: true)
        case .originNotAllowed:
            respondError(context, head, .forbidden, "forbidden", "origin not allowed", close: true)
        case .unauthorized(let reason):
            var headers = HTTPHeaders()
            headers.add(name: "WWW-Authenticate", value: #"Bearer realm="broker""#)
            respondError(context, head, .unauthorized, "unauthorized", reason, headers: headers, close: true)
        case .bodyNotAllowed(let method):
            respondError(context, head, .badRequest, "bad_request", "a \(method) request takes no body", close: true)
        case .tooLarge(let limit):
            respondError(context, head, .payloadTooLarge, "too_large", "the body exceeds \(limit) bytes", close: true)
        case .busy:
            var headers = HTTPHeaders()
            headers.add(name: "Retry-After", value: "1")
            respondError(
                context, head, .serviceUnavailable, "busy", "too many request bodies in flight; retry later",
                headers: headers, close: true)
        }
    }

    /// The request's Content-Length, 0 when absent or unreadable.
    private static func declaredLength(_ head: HTTPRequestHead) -> Int {
        head.headers.first(name: "Content-Length").flatMap(Int.init).map { max(0, $0) } ?? 0
    }

    private static func isProtected(_ path: String) -> Bool {
        path.hasPrefix("/api/") || path == "/metrics"
    }

    private var httpBodyBudget: ByteBudget { broker.httpBodyBudget }

    /// Gives the bytes this connection holds for a body back to the shared budget.
    private func releaseBody() {
        httpBodyBudget.giveBack(reservedBodyBytes)
        reservedBodyBytes = 0
    }

    // MARK: Limits and timeouts

    private func bodyLimit(for head: HTTPRequestHead) -> Int {
        let (path, query) = Self.split(head.uri)
        if head.method == .POST, path == "/api/publish/batch" || (path == "/api/publish" && query["topic"] == nil) {
            return configuration.maxBatchBytes
        }
        return configuration.maxMessageBytes
    }

    private func armIdleTimer(_ context: ChannelHandlerContext) {
        idleTimer?.cancel()
        let channel = context.channel
        idleTimer = context.eventLoop.scheduleTask(in: configuration.httpIdleTimeout) {
            channel.close(promise: nil)
        }
    }

    // MARK: Routing

    private func route(_ head: HTTPRequestHead, body: ByteBuffer, context: ChannelHandlerContext) {
        // Credentials were checked at the head (`refusal(of:)`).
        let (path, query) = Self.split(head.uri)
        guard let route = servedRoute(path) else {
            respondError(context, head, .notFound, "not_found", "no such endpoint: \(path)")
            return
        }
        if head.method == .OPTIONS, Self.isProtected(path) {
            // A CORS preflight (its origin was checked at the head; `cors` holds the answer).
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: route.allowedMethods + ", OPTIONS")
            respond(context, head, .noContent, bytes: ByteBuffer(), headers: headers)
            return
        }
        switch (head.method, route) {
        case (.GET, .healthz), (.HEAD, .healthz):
            respond(context, head, .ok, text: "ok\n")
        case (.GET, .readyz), (.HEAD, .readyz):
            ready(head, context: context)
        case (.GET, .metrics):
            metrics(head, context: context)
        case (.GET, .stats):
            stats(head, context: context)
        case (.GET, .connections):
            listConnections(head, query: query, context: context)
        case (.DELETE, .connection(let id)):
            disconnect(id, head, context: context)
        case (.GET, .topics):
            listTopics(head, query: query, context: context)
        case (.GET, .dashboard(let file)), (.HEAD, .dashboard(let file)):
            serveDashboard(file, head, context: context)
        case (.POST, .publish):
            publish(head, query: query, body: body, context: context)
        case (.POST, .publishBatch):
            guard query["topic"] == nil else {
                respondError(context, head, .badRequest, "bad_request", "a batch names its topics in its elements, not in the query")
                return
            }
            publish(head, query: query, body: body, context: context)
        case (.GET, .retained):
            listRetained(head, query: query, context: context)
        case (.DELETE, .retained):
            clearRetained(head, query: query, context: context)
        case (_, .webSocket):
            refuseWebSocketRequest(head, context: context)
        default:
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: route.allowedMethods)
            respondError(context, head, .methodNotAllowed, "method_not_allowed", "\(head.method) is not allowed on \(path)", headers: headers)
        }
    }

    /// A request for the WebSocket endpoint that was not upgraded: refused credentials, origin or
    /// connection limit (counted in `broker_upgrades_refused_total`), or not an upgrade at all.
    private func refuseWebSocketRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        // Credentials and origin first: a refused client takes no connection slot.
        if case .refused(let status, let reason, let headers) = server.admission.upgrade(head) {
            broker.logger.info("upgrade refused", metadata: [
                "status": "\(status.code)", "reason": "\(reason)",
                "peer": "\(clientAddress(of: head, context: context))",
            ])
            if Self.isUpgradeRequest(head) { countUpgradeRefusal(UpgradeRefusalReason(refusalStatus: status)) }
            respond(context, head, status, text: reason + "\n", headers: headers)
            return
        }
        if let refusal = upgradeRefusal?.value.reason {
            // A connection limit: never upgraded; the client should retry later.
            upgradeRefusal?.value.reason = nil
            countUpgradeRefusal(refusal.metricReason)
            var headers = HTTPHeaders()
            headers.add(name: "Retry-After", value: "5")
            respond(context, head, .serviceUnavailable, text: "\(refusal)\n", headers: headers, close: true)
            return
        }
        var headers = HTTPHeaders()
        headers.add(name: "Upgrade", value: "websocket")
        respond(context, head, .upgradeRequired, text: "this endpoint speaks WebSocket: send an upgrade request\n", headers: headers)
    }

    static func isUpgradeRequest(_ head: HTTPRequestHead) -> Bool {
        head.headers["Upgrade"].contains { $0.lowercased().contains("websocket") }
    }

    private func countUpgradeRefusal(_ reason: UpgradeRefusalReason) {
        shard?.counters.upgradeRefused(reason)
    }

    // MARK: Credentials

    /// `Authorization: Bearer KEY` or `X-API-Key: KEY`, when a key is configured.
    private func isAPIKey(_ head: HTTPRequestHead) -> Bool {
        guard let key = configuration.apiKey else { return false }
        if let presented = head.headers.first(name: "X-API-Key"), constantTimeEquals(presented, key) { return true }
        if let presented = bearerToken(head.headers), constantTimeEquals(presented, key) { return true }
        return false
    }

    /// Whether the operator routes need credentials: when an API key or a JWT key is configured
    /// (an admin token could be presented). Open otherwise, as the whole broker is then.
    private var isOperatorAccessGuarded: Bool {
        configuration.apiKey != nil || server.admission.authenticator.algorithmName != nil
    }

    /// A valid JWT whose claims say `"admin": true`.
    private func isAdminToken(_ head: HTTPRequestHead) -> Bool {
        guard server.admission.authenticator.algorithmName != nil, let credential = Self.credential(of: head),
            case .success(let identity) = server.admission.authenticator.authenticate(credential: credential)
        else { return false }
        return identity.isAdmin
    }

    /// A client's credential on an API request: `X-API-Key`, `Authorization: Bearer` or `?token=`.
    private static func credential(of head: HTTPRequestHead) -> String? {
        head.headers.first(name: "X-API-Key") ?? Authenticator.credential(of: head)
    }

    func refuseForbidden(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ what: String) {
        respondError(context, head, .forbidden, "forbidden", "these credentials do not permit \(what)")
    }

    // MARK: Helpers
    // MARK: Responses

    func respondError(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ code: String, _ message: String,
        headers: HTTPHeaders = HTTPHeaders(), close: Bool = false
    ) {
        var body = ByteBuffer()
        body.writeStaticString(#"{"error":{"code":"#)
        body.writeJSONString(code)
        body.writeStaticString(#","message":"#)
        body.writeJSONString(message)
        body.writeStaticString("}}")
        respond(context, head, status, json: String(buffer: body), headers: headers, close: close)
    }

    func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, json: String,
        headers extra: HTTPHeaders = HTTPHeaders(), close: Bool = false
    ) {
        var headers = extra
        headers.add(name: "Content-Type", value: "application/json")
        respond(context, head, status, bytes: ByteBuffer(string: json + "\n"), headers: headers, close: close)
    }

    func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, text: String,
        headers: HTTPHeaders = HTTPHeaders(), close: Bool = false
    ) {
        respond(context, head, status, bytes: ByteBuffer(string: text), headers: headers, close: close)
    }

    func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, bytes: ByteBuffer,
        headers extra: HTTPHeaders, close: Bool = false
    ) {
        releaseBody()
        var headers = extra
        for (name, value) in cors { headers.add(name: name, value: value) }
        if !headers.contains(name: "Content-Type") { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(bytes.readableBytes))
        let keepAlive = head.isKeepAlive && !close
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(bytes))), promise: nil)
        }
        let channel = context.channel
        if configuration.accessLog { logAccess(head, status: status, bytes: bytes.readableBytes, context: context) }
        let refused: Bool
        if case .refused = state { refused = true } else { refused = false }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
        if !refused {
            state = .idle
            armIdleTimer(context)
        }
    }

    /// The client of `head`: the TCP peer, or the one a trusted proxy names (`ClientAddress`).
    private func clientAddress(of head: HTTPRequestHead, context: ChannelHandlerContext) -> String {
        ClientAddress.resolve(
            peer: context.channel.remoteAddress, headers: head.headers, trustedProxies: configuration.trustedProxies)
            ?? context.channel.remoteAddress?.description ?? "?"
    }

    /// The access log line (`log.access`). The path without its query: a query may hold a token.
    private func logAccess(_ head: HTTPRequestHead, status: HTTPResponseStatus, bytes: Int, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? head.uri
        let elapsed = context.eventLoop.now - requestStartedAt
        broker.logger.info("http request", metadata: [
            "method": "\(head.method.rawValue)", "path": "\(path)", "status": "\(status.code)", "bytes": "\(bytes)",
            "client": "\(clientAddress(of: head, context: context))",
            "ms": "\(Double(elapsed.nanoseconds / 1000) / 1000)",
        ])
    }
}
