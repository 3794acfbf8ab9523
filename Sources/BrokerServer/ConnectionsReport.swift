import BrokerProtocol
import Foundation
import NIOCore

/// Messages and bytes one connection published and was delivered, counted on its loop.
struct ConnectionTraffic: Sendable, Equatable {
    /// Publishes received from the client, and their payload bytes.
    var messagesIn = 0
    var bytesIn = 0
    /// Messages written to the client (live and replayed), and their frame bytes.
    var messagesOut = 0
    var bytesOut = 0

    mutating func received(_ payloadBytes: Int) {
        messagesIn &+= 1
        bytesIn &+= payloadBytes
    }

    mutating func sent(_ frameBytes: Int) {
        sent(1, bytes: frameBytes)
    }

    /// `count` messages written in frames of `bytes` in all.
    mutating func sent(_ count: Int, bytes: Int) {
        messagesOut &+= count
        bytesOut &+= bytes
    }
}

/// One open connection as `GET /api/connections` reports it: a copy taken on its loop.
struct ConnectionSummary: Sendable, Equatable {
    var id: String
    var remoteAddress: String
    var client: String?
    var subscriptions: [String]
    var traffic: ConnectionTraffic
    /// Bytes written and not yet taken by the kernel, plus live messages held back by a replay.
    var queuedBytes: Int
    var connectedAt: Date
}

extension WebSocketConnection {
    /// A copy of what the admin API shows of this connection (on its loop).
    var summary: ConnectionSummary {
        ConnectionSummary(
            id: sessionID, remoteAddress: remoteAddress, client: identity.client,
            subscriptions: filters.map { String($0.text) }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) },
            traffic: traffic, queuedBytes: bufferedBytes + heldBackBytes, connectedAt: connectedAt)
    }

    /// `host:port` of a peer (`[host]:port` for IPv6), as operators read addresses.
    static func hostAndPort(_ address: SocketAddress) -> String {
        guard let ip = address.ipAddress else { return address.description }
        let host = ip.contains(":") ? "[\(ip)]" : ip
        return address.port.map { "\(host):\($0)" } ?? host
    }
}

/// The operator's view of connections (`/api/connections`): each loop answers for its own
/// connections on its own loop, and the answers are combined on the caller's loop; no loop
/// waits for another.
extension Broker {
    /// Up to `limit` open connections, oldest first, with the total number open.
    func connectionSummaries(limit: Int, on eventLoop: any EventLoop) -> EventLoopFuture<(total: Int, connections: [ConnectionSummary])> {
        let perShard = shards.map { shard in
            shard.eventLoop.submit { () -> (Int, [ConnectionSummary]) in
                let connections = shard.connections
                // Each loop's oldest `limit` suffice: no more can make the combined list.
                let oldest = connections.count <= limit ? connections : Array(connections.sorted { $0.connectedAt < $1.connectedAt }.prefix(limit))
                return (connections.count, oldest.map(\.summary))
            }
        }
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).map { answers in
            let total = answers.reduce(0) { $0 + $1.0 }
            let all = answers.flatMap(\.1).sorted { ($0.connectedAt, $0.id) < ($1.connectedAt, $1.id) }
            return (total, Array(all.prefix(limit)))
        }
    }

    /// Closes the connection whose session is `id` (1008 "disconnected by operator"); succeeds
    /// with whether there was one.
    func disconnect(sessionID id: String, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        let perShard = shards.map { shard in
            shard.eventLoop.submit { () -> Bool in
                guard let connection = shard.connections.first(where: { $0.sessionID == id }) else { return false }
                self.logger.notice("disconnecting on operator request", metadata: ["session": "\(id)"])
                connection.close(.operatorRequest)
                return true
            }
        }
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).map { $0.contains(true) }
    }

    /// Active subscription filters with their subscriber counts, over every loop.
    func subscriptionFilters(on eventLoop: any EventLoop) -> EventLoopFuture<[String: Int]> {
        let perShard = shards.map { shard in
            shard.eventLoop.submit { () -> [BytewiseKey: Int] in
                var counts: [BytewiseKey: Int] = [:]
                for connection in shard.connections {
                    for filter in connection.filters { counts[filter, default: 0] += 1 }
                }
                return counts
            }
        }
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).map { answers in
            var total: [String: Int] = [:]
            for counts in answers {
                for (filter, count) in counts { total[String(filter.text), default: 0] += count }
            }
            return total
        }
    }
}

extension ConnectionSummary {
    /// `{"total":N,"connections":[…]}` (docs/http-api.md "Connections").
    static func json(total: Int, _ connections: [ConnectionSummary]) -> String {
        var out = ByteBuffer()
        out.writeString(#"{"total":\#(total),"connections":["#)
        for (index, connection) in connections.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            connection.write(into: &out)
        }
        out.writeStaticString("]}")
        return String(buffer: out)
    }

    func write(into out: inout ByteBuffer) {
        out.writeStaticString(#"{"id":"#)
        out.writeJSONString(id)
        out.writeStaticString(#","remoteAddress":"#)
        out.writeJSONString(remoteAddress)
        out.writeStaticString(#","client":"#)
        if let client { out.writeJSONString(client) } else { out.writeStaticString("null") }
        out.writeStaticString(#","subscriptions":["#)
        for (index, filter) in subscriptions.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeJSONString(filter)
        }
        out.writeString(
            #"],"messagesIn":\#(traffic.messagesIn),"bytesIn":\#(traffic.bytesIn),"#
                + #""messagesOut":\#(traffic.messagesOut),"bytesOut":\#(traffic.bytesOut),"queuedBytes":\#(queuedBytes),"#)
        out.writeStaticString(#""connectedAt":"#)
        out.writeJSONString(connectedAt.formatted(.iso8601))
        out.writeStaticString("}")
    }
}
