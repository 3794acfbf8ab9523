import BrokerJournal
import BrokerProtocol
import Foundation
import NIOCore
import NIOHTTP1

/// Answers the plain HTTP requests on the broker's listener that are not WebSocket upgrades
/// (docs/http-api.md, docs/openapi.yaml):
///
/// - `GET /healthz` — `ok` (text) while the process serves.
/// - `GET /readyz` — 200 when listening and the journal writer answers, 503 otherwise.
/// - `GET /metrics` — Prometheus text format.
/// - `POST /api/publish?topic=T[&retain=true]` — one message; `POST /api/publish` (or
///   `/api/publish/batch`) with a JSON array — a batch.
/// - `GET /api/retained?topic=FILTER[&since=S][&limit=N]`, `DELETE /api/retained?topic=FILTER`.
/// - `GET /api/stats`.
///
/// `/api/*` and `/metrics` need the API key when one is configured; `POST /api/publish` and
/// `GET`/`DELETE /api/retained` also take a client's credentials (a JWT within its permissions,
/// a client token) whenever any credential is configured. Browsers: a request from a foreign
/// `Origin` gets 403 and no CORS headers, one from an allowed origin its CORS headers; on a loopback
/// listener a `Host` that is not a loopback name gets 421 (DNS rebinding). Every error is a JSON body
/// `{"error":{"code":…,"message":…}}`. A body is collected up to its route's limit and refused
/// with 413 as soon as the declared or received length passes it. A connection that takes longer
/// than the idle timeout to send a request (or sits idle between requests) is closed.
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

    private let broker: Broker
    private let server: ServerHooks
    private let webSocketPaths: Set<String>
    /// Set by the upgrader when it refused a WebSocket upgrade for a connection limit.
    private let upgradeRefusal: NIOLoopBound<UpgradeRefusal>?
    private var state = State.idle
    private var idleTimer: Scheduled<Void>?
    /// What the current request's credentials permit (publish and retained endpoints), decided
    /// at its head.
    private var permissions = Permissions.everything
    /// CORS headers for the current request's answer (an allowed cross-origin page), else empty.
    private var cors = HTTPHeaders()
    /// Bytes of the current request's body taken from `broker.httpBodyBudget`.
    private var reservedBodyBytes = 0

    init(
        broker: Broker, server: ServerHooks, webSocketPaths: Set<String>, upgradeRefusal: NIOLoopBound<UpgradeRefusal>? = nil
    ) {
        self.broker = broker
        self.server = server
        self.webSocketPaths = webSocketPaths
        self.upgradeRefusal = upgradeRefusal
    }

    private var configuration: BrokerConfiguration { broker.configuration }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        armIdleTimer(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        releaseBody()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), _):
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

    private func refusal(of head: HTTPRequestHead) -> Refusal? {
        let (path, _) = Self.split(head.uri)
        let admission = server.admission
        cors = HTTPHeaders()
        permissions = .everything
        // DNS rebinding: a loopback listener answers to loopback names only (the probes, which
        // say nothing, excepted).
        let probe = path == "/healthz" || path == "/readyz"
        guard probe || admission.origins.isAllowedHost(head) else { return .misdirected }
        if Self.isProtected(path) {
            // A page from a foreign origin gets nothing (CSRF: not even a text/plain POST).
            guard admission.origins.isAllowedOrigin(head) else { return .originNotAllowed }
            cors = admission.origins.corsHeaders(head, preflight: head.method == .OPTIONS)
            // A preflight carries no credentials (browsers never send them on one).
            if head.method != .OPTIONS, !isAPIKey(head) {
                let clientEndpoint = path == "/api/publish" || path == "/api/publish/batch" || path == "/api/retained"
                if clientEndpoint, configuration.hasCredentials {
                    switch admission.authenticator.authenticate(credential: Self.credential(of: head)) {
                    case .success(let identity): permissions = identity.permissions
                    case .failure(let refusal): return .unauthorized(refusal.reason)
                    }
                } else if configuration.apiKey != nil {
                    return .unauthorized("missing or wrong API key")
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
        // The API key was checked at the head (`refusal(of:)`).
        let (path, query) = Self.split(head.uri)
        if head.method == .OPTIONS, Self.isProtected(path) {
            // A CORS preflight (its origin was checked at the head; `cors` holds the answer).
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: (Self.allowed[path] ?? "GET") + ", OPTIONS")
            respond(context, head, .noContent, bytes: ByteBuffer(), headers: headers)
            return
        }
        switch (head.method, path) {
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            respond(context, head, .ok, text: "ok\n")
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            ready(head, context: context)
        case (.GET, "/metrics"):
            metrics(head, context: context)
        case (.GET, "/api/stats"):
            broker.statsJSON(on: context.eventLoop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let json): self.respond(context, head, .ok, json: json)
                case .failure(let error): self.respondError(context, head, .internalServerError, "internal", "\(error)")
                }
            }
        case (.POST, "/api/publish"):
            publish(head, query: query, body: body, context: context)
        case (.POST, "/api/publish/batch"):
            guard query["topic"] == nil else {
                respondError(context, head, .badRequest, "bad_request", "a batch names its topics in its elements, not in the query")
                return
            }
            publish(head, query: query, body: body, context: context)
        case (.GET, "/api/retained"):
            listRetained(head, query: query, context: context)
        case (.DELETE, "/api/retained"):
            clearRetained(head, query: query, context: context)
        case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"), (_, "/api/stats"), (_, "/api/publish"), (_, "/api/publish/batch"),
            (_, "/api/retained"):
            var headers = HTTPHeaders()
            headers.add(name: "Allow", value: Self.allowed[path] ?? "GET")
            respondError(context, head, .methodNotAllowed, "method_not_allowed", "\(head.method) is not allowed on \(path)", headers: headers)
        case (_, _) where webSocketPaths.contains(path):
            // Credentials and origin first: a refused client takes no connection slot.
            if case .refused(let status, let reason, let headers) = server.admission.upgrade(head) {
                broker.logger.info("upgrade refused", metadata: [
                    "status": "\(status.code)", "reason": "\(reason)",
                    "peer": "\(context.channel.remoteAddress?.description ?? "?")",
                ])
                respond(context, head, status, text: reason + "\n", headers: headers)
                return
            }
            if let refusal = upgradeRefusal?.value.reason {
                // A connection limit: never upgraded; the client should retry later.
                var headers = HTTPHeaders()
                headers.add(name: "Retry-After", value: "5")
                respond(context, head, .serviceUnavailable, text: "\(refusal)\n", headers: headers, close: true)
                return
            }
            var headers = HTTPHeaders()
            headers.add(name: "Upgrade", value: "websocket")
            respond(context, head, .upgradeRequired, text: "this endpoint speaks WebSocket: send an upgrade request\n", headers: headers)
        default:
            respondError(context, head, .notFound, "not_found", "no such endpoint: \(path)")
        }
    }

    private static let allowed = [
        "/healthz": "GET, HEAD", "/readyz": "GET, HEAD", "/metrics": "GET", "/api/stats": "GET",
        "/api/publish": "POST", "/api/publish/batch": "POST", "/api/retained": "GET, DELETE",
    ]

    /// `Authorization: Bearer KEY` or `X-API-Key: KEY`, when a key is configured.
    private func isAPIKey(_ head: HTTPRequestHead) -> Bool {
        guard let key = configuration.apiKey else { return false }
        if let presented = head.headers.first(name: "X-API-Key"), constantTimeEquals(presented, key) { return true }
        if let presented = bearerToken(head.headers), constantTimeEquals(presented, key) { return true }
        return false
    }

    /// A client's credential on an API request: `X-API-Key`, `Authorization: Bearer` or `?token=`.
    private static func credential(of head: HTTPRequestHead) -> String? {
        head.headers.first(name: "X-API-Key") ?? Authenticator.credential(of: head)
    }

    private func refuseForbidden(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ what: String) {
        respondError(context, head, .forbidden, "forbidden", "these credentials do not permit \(what)")
    }

    // MARK: Endpoints

    private func ready(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard server.isListening() else {
            respondError(context, head, .serviceUnavailable, "not_ready", "the listener is not accepting connections")
            return
        }
        // The journal is writable when its writer answers a request in turn.
        let promise = context.eventLoop.makePromise(of: Void.self)
        broker.journal.snapshot { _ in promise.succeed() }
        let timeout = context.eventLoop.scheduleTask(in: .seconds(2)) {
            promise.fail(ChannelError.operationUnsupported)
        }
        promise.futureResult.assumeIsolated().whenComplete { result in
            timeout.cancel()
            switch result {
            case .success: self.respond(context, head, .ok, json: #"{"ready":true}"#)
            case .failure: self.respondError(context, head, .serviceUnavailable, "not_ready", "the journal writer does not answer")
            }
        }
    }

    private func metrics(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let render = server.renderMetrics else {
            respondError(context, head, .notFound, "not_found", "metrics are not enabled")
            return
        }
        broker.metrics.collect(broker, on: context.eventLoop).assumeIsolated().whenComplete { _ in
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
            self.respond(context, head, .ok, bytes: ByteBuffer(bytes: render()), headers: headers)
        }
    }

    private func publish(_ head: HTTPRequestHead, query: [String: String], body: ByteBuffer, context: ChannelHandlerContext) {
        let limits = broker.requestLimits
        let items: [PublishItem]
        let isJSON = Self.isJSON(head.headers)
        if let topic = query["topic"] {
            var retain = false
            if let value = query["retain"] {
                guard let flag = Self.bool(value) else {
                    respondError(context, head, .badRequest, "bad_request", "retain must be true or false")
                    return
                }
                retain = flag
            }
            do {
                try ControlRequest.validatePublishTopic(topic, limits: limits, id: nil)
                if isJSON { try PublishBody.validateJSON(body) }
            } catch {
                respondError(context, head, Self.status(of: error.code), error.code.rawValue, error.message)
                return
            }
            items = [PublishItem(topic: topic, payload: body, isBinary: !isJSON, retain: retain)]
        } else {
            guard isJSON else {
                respondError(context, head, .unsupportedMediaType, "bad_request", "a batch publish is a JSON array (Content-Type: application/json)")
                return
            }
            switch PublishBody.parseBatch(body, limits: limits, maxItems: configuration.maxBatchMessages) {
            case .success(let batch): items = batch
            case .failure(let error):
                respondError(context, head, Self.status(of: error.code), error.code.rawValue, error.message)
                return
            }
        }
        for item in items where !permissions.mayPublish(to: item.topic) {
            refuseForbidden(context, head, "publishing to \(item.topic)")
            return
        }
        let single = query["topic"] != nil
        broker.publish(items, on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let offsets):
                func reply(_ offset: UInt64?) -> String { offset.map { #"{"offset":\#($0)}"# } ?? "{}" }
                let json = single ? reply(offsets[0]) : #"{"results":[\#(offsets.map(reply).joined(separator: ","))]}"#
                self.respond(context, head, .ok, json: json)
            case .failure(let error):
                self.broker.logger.error("journal append failed", metadata: ["error": "\(error)", "source": "http"])
                self.respondError(context, head, .internalServerError, "internal", "the message could not be stored")
            }
        }
    }

    private func validatedFilter(_ head: HTTPRequestHead, _ query: [String: String], _ context: ChannelHandlerContext) -> String? {
        guard let filter = query["topic"], !filter.isEmpty else {
            respondError(context, head, .badRequest, "bad_request", "missing query parameter: topic")
            return nil
        }
        do {
            try Topic.validateFilter(filter, maxBytes: configuration.maxTopicBytes, maxLevels: configuration.maxTopicLevels)
        } catch {
            respondError(context, head, .badRequest, "invalid_topic", "invalid topic filter: \(error)")
            return nil
        }
        return filter
    }

    private func listRetained(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        guard let filter = validatedFilter(head, query, context) else { return }
        guard permissions.maySubscribe(to: filter) else {
            refuseForbidden(context, head, "reading \(filter)")
            return
        }
        var since: UInt64 = 0
        var limit = 100
        if let value = query["since"] {
            guard let parsed = UInt64(value) else {
                respondError(context, head, .badRequest, "bad_request", "since must be an integer ≥ 0")
                return
            }
            since = parsed
        }
        if let value = query["limit"] {
            guard let parsed = Int(value), (1...1_000).contains(parsed) else {
                respondError(context, head, .badRequest, "bad_request", "limit must be an integer from 1 to 1000")
                return
            }
            limit = parsed
        }
        let eventLoop = context.eventLoop
        let journal = broker.journal
        let query = ReplayQuery(filter: filter, selection: .since(since), after: since, upTo: 0, limit: limit)
        let promise = eventLoop.makePromise(of: UInt64.self)
        journal.snapshot { promise.succeed($0) }
        promise.futureResult.flatMap { highWater in
            var page = query
            page.upTo = highWater
            return journal.replayPage(page, on: eventLoop)
        }.assumeIsolated().whenComplete { result in
            switch result {
            case .success(let page):
                self.respond(context, head, .ok, json: Self.encode(page, epoch: journal.epoch))
            case .failure(let error):
                self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    static func encode(_ page: ReplayPage, epoch: String) -> String {
        var out = ByteBuffer()
        out.writeStaticString(#"{"epoch":"#)
        out.writeJSONString(epoch)
        out.writeStaticString(#","messages":["#)
        for (index, record) in page.records.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString(#"{"topic":"#)
            out.writeJSONString(record.topic)
            out.writeString(#","offset":\#(record.offset),"timestamp":\#(record.timestampMilliseconds),"#)
            if record.isBinary {
                out.writeStaticString(#""binary":""#)
                out.writeString(Data(record.payload.readableBytesView).base64EncodedString())
                out.writeStaticString(#"""#)
            } else {
                out.writeStaticString(#""data":"#)
                var payload = record.payload
                out.writeBuffer(&payload)
            }
            out.writeStaticString("}")
        }
        out.writeStaticString(#"],"next":"#)
        if !page.isLast, let last = page.records.last {
            out.writeString(String(last.offset))
        } else {
            out.writeStaticString("null")
        }
        out.writeStaticString("}")
        return String(buffer: out)
    }

    private func clearRetained(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        guard let filter = validatedFilter(head, query, context) else { return }
        guard permissions.mayClear(filter) else {
            refuseForbidden(context, head, "clearing \(filter)")
            return
        }
        broker.journal.clear(filter: filter, on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let count):
                self.broker.logger.notice("retained messages cleared", metadata: ["filter": "\(filter)", "count": "\(count)"])
                self.respond(context, head, .ok, json: #"{"cleared":\#(count)}"#)
            case .failure(let error):
                self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    // MARK: Helpers

    static func split(_ uri: String) -> (path: String, query: [String: String]) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(keyValue[0]).removingPercentEncoding ?? String(keyValue[0])
                let value = keyValue.count > 1 ? String(keyValue[1]).replacingOccurrences(of: "+", with: " ") : ""
                query[key] = value.removingPercentEncoding ?? value
            }
        }
        return (String(parts[0]), query)
    }

    static func isJSON(_ headers: HTTPHeaders) -> Bool {
        guard let type = headers.first(name: "Content-Type") else { return false }
        let mediaType = type.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
        return mediaType == "application/json" || mediaType?.hasSuffix("+json") == true
    }

    static func bool(_ value: String) -> Bool? {
        switch value.lowercased() {
        case "true", "1", "yes", "": return true
        case "false", "0", "no": return false
        default: return nil
        }
    }

    static func status(of code: ErrorCode) -> HTTPResponseStatus {
        switch code {
        case .forbidden: return .forbidden
        case .tooLarge: return .payloadTooLarge
        case .internal: return .internalServerError
        default: return .badRequest
        }
    }

    private func respondError(
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

    private func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, json: String,
        headers extra: HTTPHeaders = HTTPHeaders(), close: Bool = false
    ) {
        var headers = extra
        headers.add(name: "Content-Type", value: "application/json")
        respond(context, head, status, bytes: ByteBuffer(string: json + "\n"), headers: headers, close: close)
    }

    private func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, text: String,
        headers: HTTPHeaders = HTTPHeaders(), close: Bool = false
    ) {
        respond(context, head, status, bytes: ByteBuffer(string: text), headers: headers, close: close)
    }

    private func respond(
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
}

/// Why the upgrader did not upgrade a connection's WebSocket request, when the reason is a
/// connection limit: the HTTP handler answers 503 with it. One per connection, on its loop.
final class UpgradeRefusal {
    var reason: ConnectionAdmission.Refusal?
    init() {}
}

/// What the HTTP handler needs from the server around it.
struct ServerHooks: Sendable {
    /// Whether the listener accepts connections (false before start and while draining).
    var isListening: @Sendable () -> Bool
    /// Prometheus text of every metric; nil when metrics are off.
    var renderMetrics: (@Sendable () -> [UInt8])?
    /// Host, Origin and credential checks (upgrades and the HTTP API).
    var admission: Admission
}

/// The token of `Authorization: Bearer TOKEN`.
func bearerToken(_ headers: HTTPHeaders) -> String? {
    guard let value = headers.first(name: "Authorization") else { return nil }
    let parts = value.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    return parts[1].trimmingCharacters(in: .whitespaces)
}

/// Compares secrets in time independent of where they differ.
func constantTimeEquals(_ a: String, _ b: String) -> Bool {
    let x = Array(a.utf8)
    let y = Array(b.utf8)
    var difference = UInt8(x.count == y.count ? 0 : 1)
    for i in 0..<max(x.count, y.count) {
        difference |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0)
    }
    return difference == 0
}
