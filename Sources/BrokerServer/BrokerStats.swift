import BrokerJournal
import Foundation
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
            shard.eventLoop.submit {
                var counters = shard.counters
                shard.compressor?.count(into: &counters)
                return (counters, shard.connections.count, shard.subscriptionCount)
            }
        }
        let outbox = self.outbox
        return EventLoopFuture.whenAllSucceed(perShard, on: eventLoop).map { shards in
            var totals = BrokerTotals()
            outbox.countCompression(into: &totals.counters)
            for (counters, connections, subscriptions) in shards {
                totals.counters.add(counters)
                totals.connections += connections
                totals.subscriptions += subscriptions
            }
            return totals
        }
    }

    /// Figures for `GET /api/stats` and `$sys/broker/stats`, read from every loop and the journal.
    func stats(on eventLoop: any EventLoop) -> EventLoopFuture<BrokerStats> {
        let uptime = (NIODeadline.now() - startedAt).nanoseconds / 1_000_000_000
        let epoch = journal.epoch
        return totals(on: eventLoop).and(journal.stats(on: eventLoop)).map { totals, journal in
            BrokerStats(totals: totals, journal: journal, epoch: epoch, uptimeSeconds: uptime)
        }
    }

    /// Figures for `GET /api/stats`, as a JSON object (docs/http-api.md).
    func statsJSON(on eventLoop: any EventLoop) -> EventLoopFuture<String> {
        stats(on: eventLoop).map { $0.json() }
    }
}

/// The broker's figures at one moment: what `/api/stats` answers and `$sys/broker/stats` carries.
struct BrokerStats: Sendable {
    var totals: BrokerTotals
    var journal: JournalStats
    var epoch: String
    var uptimeSeconds: Int64

    var messagesIn: Int { totals.counters.publishedMessages.reduce(0, +) }
    var bytesIn: Int { totals.counters.publishedBytes.reduce(0, +) }
    var messagesOut: Int { totals.counters.deliveredTextMessages + totals.counters.deliveredBinaryMessages }
    var bytesOut: Int { totals.counters.deliveredTextBytes + totals.counters.deliveredBinaryBytes }

    /// Per-second rates since an earlier figure.
    struct Rates: Sendable, Equatable {
        var messagesIn: Double
        var bytesIn: Double
        var messagesOut: Double
        var bytesOut: Double
    }

    func rates(since earlier: BrokerStats, seconds: Double) -> Rates {
        guard seconds > 0 else { return Rates(messagesIn: 0, bytesIn: 0, messagesOut: 0, bytesOut: 0) }
        func rate(_ now: Int, _ before: Int) -> Double { Double(max(0, now - before)) / seconds }
        return Rates(
            messagesIn: rate(messagesIn, earlier.messagesIn), bytesIn: rate(bytesIn, earlier.bytesIn),
            messagesOut: rate(messagesOut, earlier.messagesOut), bytesOut: rate(bytesOut, earlier.bytesOut))
    }

    /// The JSON object of docs/http-api.md "Stats", with `"rates"` when given.
    func json(rates: Rates? = nil) -> String {
        let total = totals.counters
        var json = #"{"connections":\#(totals.connections),"subscriptions":\#(totals.subscriptions),"topics":\#(journal.topics),"#
        json += #""messagesIn":\#(messagesIn),"bytesIn":\#(bytesIn),"messagesOut":\#(messagesOut),"bytesOut":\#(bytesOut),"#
        json += #""replayedMessages":\#(total.replayedMessages),"uptimeSeconds":\#(uptimeSeconds),"#
        json += #""journal":{"epoch":"\#(epoch)","messages":\#(journal.messages),"topics":\#(journal.topics),"#
        json += #""bytes":\#(journal.bytes),"firstOffset":\#(journal.firstOffset),"lastOffset":\#(journal.lastOffset),"#
        json += #""prunedMessages":\#(journal.prunedMessages)}"#
        if let rates {
            func number(_ value: Double) -> String { String(format: "%.3f", value) }
            json += #","rates":{"messagesIn":\#(number(rates.messagesIn)),"bytesIn":\#(number(rates.bytesIn)),"#
            json += #""messagesOut":\#(number(rates.messagesOut)),"bytesOut":\#(number(rates.bytesOut))}"#
        }
        return json + "}"
    }
}
