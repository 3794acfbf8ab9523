import BrokerJournal
import NIOCore

/// Every shard's counters summed, with the open connections and subscriptions: what stats and
/// metrics both report.
struct BrokerTotals {
    var counters = ShardCounters()
    var connections = 0
    var subscriptions = 0
}

extension Broker {
    /// Reads each shard on its own loop and sums them.
    func totals(on eventLoop: any EventLoop) -> EventLoopFuture<BrokerTotals> {
        let perShard = shards.map { shard in
            shard.eventLoop.submit { (shard.counters, shard.connections.count, shard.subscriptionCount) }
        }
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).map { shards in
            var totals = BrokerTotals()
            for (counters, connections, subscriptions) in shards {
                totals.counters.add(counters)
                totals.connections += connections
                totals.subscriptions += subscriptions
            }
            return totals
        }
    }

    /// Figures for `GET /api/stats`, as a JSON object (docs/http-api.md).
    func statsJSON(on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let uptime = (NIODeadline.now() - startedAt).nanoseconds / 1_000_000_000
        let epoch = journal.epoch
        return totals(on: eventLoop).and(journal.stats(on: eventLoop)).map { totals, journal in
            let total = totals.counters
            let connections = totals.connections
            let subscriptions = totals.subscriptions
            let messagesIn = total.publishedMessages.reduce(0, +)
            let bytesIn = total.publishedBytes.reduce(0, +)
            let messagesOut = total.deliveredTextMessages + total.deliveredBinaryMessages
            let bytesOut = total.deliveredTextBytes + total.deliveredBinaryBytes
            var json = #"{"connections":\#(connections),"subscriptions":\#(subscriptions),"topics":\#(journal.topics),"#
            json += #""messagesIn":\#(messagesIn),"bytesIn":\#(bytesIn),"messagesOut":\#(messagesOut),"bytesOut":\#(bytesOut),"#
            json += #""replayedMessages":\#(total.replayedMessages),"uptimeSeconds":\#(uptime),"#
            json += #""journal":{"epoch":"\#(epoch)","messages":\#(journal.messages),"topics":\#(journal.topics),"#
            json += #""bytes":\#(journal.bytes),"firstOffset":\#(journal.firstOffset),"lastOffset":\#(journal.lastOffset),"#
            json += #""prunedMessages":\#(journal.prunedMessages)}}"#
            return json
        }
    }
}
