import BrokerJournal
import BrokerProtocol
import Foundation
import NIOCore
import NIOHTTP1

/// Answers the plain HTTP requests on the broker's listener that are not WebSocket upgrades:
/// health, stats and clearing retained messages. Everything else gets a short error; the
/// WebSocket path without an upgrade gets 426.
///
/// Routes (JSON bodies unless noted):
/// - `GET /healthz` — `ok` (text) while the process serves.
/// - `GET /api/stats` — connections, subscriptions and journal figures.
/// - `DELETE /api/retained?topic=FILTER` — deletes the retained messages of matching topics,
///   answers `{"cleared": N}`.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "http-requests"

    private let broker: Broker
    private let webSocketPaths: Set<String>
    private var request: HTTPRequestHead?

    init(broker: Broker, webSocketPaths: Set<String>) {
        self.broker = broker
        self.webSocketPaths = webSocketPaths
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break  // no route takes a body yet
        case .end:
            guard let head = request else { return }
            request = nil
            route(head, context: context)
        }
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let (path, query) = Self.split(head.uri)
        switch (head.method, path) {
        case (.GET, "/healthz"):
            respond(context, head, .ok, text: "ok\n")
        case (.GET, "/api/stats"):
            let loop = context.eventLoop
            broker.stats(on: loop).assumeIsolated().whenComplete { result in
                switch result {
                case .success(let json): self.respond(context, head, .ok, json: json)
                case .failure(let error): self.respondError(context, head, .internalServerError, "internal", "\(error)")
                }
            }
        case (.DELETE, "/api/retained"):
            guard let filter = query["topic"], !filter.isEmpty else {
                respondError(context, head, .badRequest, "bad_request", "missing query parameter: topic")
                return
            }
            do {
                try Topic.validateFilter(filter, maxBytes: broker.configuration.maxTopicBytes)
            } catch {
                respondError(context, head, .badRequest, "invalid_topic", "\(error)")
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
        case (_, "/healthz"), (_, "/api/stats"), (_, "/api/retained"):
            respondError(context, head, .methodNotAllowed, "method_not_allowed", "method not allowed")
        case (_, _) where webSocketPaths.contains(path):
            var headers = HTTPHeaders()
            headers.add(name: "Upgrade", value: "websocket")
            respond(context, head, .upgradeRequired, text: "this endpoint speaks WebSocket: send an upgrade request\n", headers: headers)
        default:
            respondError(context, head, .notFound, "not_found", "not found")
        }
    }

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

    private func respondError(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, _ code: String, _ message: String
    ) {
        var body = ByteBuffer()
        body.writeStaticString(#"{"error":{"code":"#)
        body.writeJSONString(code)
        body.writeStaticString(#","message":"#)
        body.writeJSONString(message)
        body.writeStaticString("}}")
        respond(context, head, status, json: String(buffer: body))
    }

    private func respond(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, json: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        respond(context, head, status, text: json + "\n", headers: headers)
    }

    private func respond(
        _ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ status: HTTPResponseStatus, text: String,
        headers extra: HTTPHeaders = HTTPHeaders()
    ) {
        var headers = extra
        if !headers.contains(name: "Content-Type") { headers.add(name: "Content-Type", value: "text/plain; charset=utf-8") }
        headers.add(name: "Content-Length", value: String(text.utf8.count))
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: text)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
