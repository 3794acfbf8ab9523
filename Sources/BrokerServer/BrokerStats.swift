import BrokerJournal
import NIOCore

extension Broker {
    /// Figures for `GET /api/stats`, as a JSON object (docs/http-api.md).
    func statsJSON(on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        let perShard = shards.map { shard in
            shard.eventLoop.submit { (shard.counters, shard.connections.count, shard.subscriptionCount) }
        }
        let uptime = (NIODeadline.now() - startedAt).nanoseconds / 1_000_000_000
        let epoch = journal.epoch
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).and(journal.stats(on: eventLoop)).map { shards, journal in
            var total = ShardCounters()
            var connections = 0
            var subscriptions = 0
            for (counters, connectionCount, subscriptionCount) in shards {
                total.add(counters)
                connections += connectionCount
                subscriptions += subscriptionCount
            }
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
