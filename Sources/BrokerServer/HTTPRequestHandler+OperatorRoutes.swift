import BrokerJournal
import BrokerProtocol
import NIOCore
import NIOHTTP1

/// Health probes and the operator API: stats, metrics, connections, topics (docs/http-api.md).
/// Credentials were checked at the head; every figure is gathered without blocking a loop.
extension HTTPRequestHandler {
    func ready(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
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
            case .success where self.broker.cluster?.isConnected == false:
                self.respondError(context, head, .serviceUnavailable, "not_ready", "the cluster journal (PostgreSQL) is not reachable")
            case .success: self.respond(context, head, .ok, json: #"{"ready":true}"#)
            case .failure: self.respondError(context, head, .serviceUnavailable, "not_ready", "the journal writer does not answer")
            }
        }
    }

    func metrics(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
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

    func stats(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        broker.statsJSON(on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let json): self.respond(context, head, .ok, json: json)
            case .failure(let error): self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    /// Most connections one `GET /api/connections` lists, and how many by default.
    static let maxConnectionsListed = 100_000
    static let defaultConnectionsListed = 1_000

    func listConnections(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        guard let limit = limit(query, default: Self.defaultConnectionsListed, max: Self.maxConnectionsListed, head, context) else { return }
        broker.connectionSummaries(limit: limit, on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let answer):
                self.respond(context, head, .ok, json: ConnectionSummary.json(total: answer.total, answer.connections))
            case .failure(let error):
                self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    func disconnect(_ id: String, _ head: HTTPRequestHead, context: ChannelHandlerContext) {
        broker.disconnect(sessionID: id, on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(true):
                self.respond(context, head, .noContent, bytes: ByteBuffer(), headers: HTTPHeaders())
            case .success(false):
                self.respondError(context, head, .notFound, "not_found", "no open connection \(id)")
            case .failure(let error):
                self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    func listTopics(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
        guard let limit = limit(query, default: 100, max: 1_000, head, context) else { return }
        let topicsQuery = RetainedTopicsQuery(prefix: query["prefix"] ?? "", after: query["after"], limit: limit)
        broker.topicsReport(topicsQuery, on: context.eventLoop).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let report): self.respond(context, head, .ok, json: report.json)
            case .failure(let error): self.respondError(context, head, .internalServerError, "internal", "\(error)")
            }
        }
    }

    /// `?limit=` from 1 to `max` (`default` when absent); nil once a 400 was answered.
    private func limit(
        _ query: [String: String], default value: Int, max: Int, _ head: HTTPRequestHead, _ context: ChannelHandlerContext
    ) -> Int? {
        guard let text = query["limit"] else { return value }
        guard let parsed = Int(text), (1...max).contains(parsed) else {
            respondError(context, head, .badRequest, "bad_request", "limit must be an integer from 1 to \(max)")
            return nil
        }
        return parsed
    }
}
