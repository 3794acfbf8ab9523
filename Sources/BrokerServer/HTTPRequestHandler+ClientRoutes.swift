import BrokerJournal
import BrokerProtocol
import Foundation
import NIOCore
import NIOHTTP1

/// The client API: publishing and the retained messages (docs/http-api.md "Publish", "Retained
/// messages"). `permissions` holds what the request's credentials allow, decided at its head.
extension HTTPRequestHandler {
    func publish(_ head: HTTPRequestHead, query: [String: String], body: ByteBuffer, context: ChannelHandlerContext) {
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

    func validatedFilter(_ head: HTTPRequestHead, _ query: [String: String], _ context: ChannelHandlerContext) -> String? {
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

    func listRetained(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
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

    func clearRetained(_ head: HTTPRequestHead, query: [String: String], context: ChannelHandlerContext) {
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
}
