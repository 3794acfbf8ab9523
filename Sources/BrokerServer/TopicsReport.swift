import BrokerJournal
import BrokerProtocol
import NIOCore

/// What `GET /api/topics` answers: a page of the topics with retained messages (from the
/// journal, read off the loops), each with the number of current subscriptions whose filter
/// matches it, and the active filters with their subscriber counts (from every loop).
struct TopicsReport: Sendable {
    struct TopicEntry: Sendable, Equatable {
        var retained: RetainedTopic
        var subscriptions: Int
    }

    var topics: [TopicEntry]
    /// The cursor of the next page (`?after=`), nil on the last.
    var next: String?
    /// Up to `limit` filters, byte-wise ordered, and how many there are in all.
    var filters: [(filter: String, subscribers: Int)]
    var filtersTotal: Int

    /// Combines a journal page with the filters of every loop.
    init(page: RetainedTopicsPage, filterCounts: [String: Int], limit: Int) {
        let compiled = filterCounts.map { (CompiledFilter($0.key), $0.value) }
        topics = page.topics.map { retained in
            let subscriptions = compiled.reduce(0) { sum, entry in entry.0.matches(retained.topic) ? sum + entry.1 : sum }
            return TopicEntry(retained: retained, subscriptions: subscriptions)
        }
        next = page.isLast ? nil : page.topics.last?.topic
        let sorted = filterCounts.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        filters = sorted.prefix(limit).map { ($0.key, $0.value) }
        filtersTotal = filterCounts.count
    }

    var json: String {
        var out = ByteBuffer()
        out.writeStaticString(#"{"topics":["#)
        for (index, topic) in topics.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString(#"{"topic":"#)
            out.writeJSONString(topic.retained.topic)
            out.writeString(
                #","retained":\#(topic.retained.messages),"lastOffset":\#(topic.retained.lastOffset),"#
                    + #""subscriptions":\#(topic.subscriptions)}"#)
        }
        out.writeStaticString(#"],"next":"#)
        if let next { out.writeJSONString(next) } else { out.writeStaticString("null") }
        out.writeStaticString(#","filters":["#)
        for (index, entry) in filters.enumerated() {
            if index > 0 { out.writeStaticString(",") }
            out.writeStaticString(#"{"filter":"#)
            out.writeJSONString(entry.filter)
            out.writeString(#","subscribers":\#(entry.subscribers)}"#)
        }
        out.writeString(#"],"filtersTotal":\#(filtersTotal)}"#)
        return String(buffer: out)
    }
}

extension Broker {
    /// The report for `query`: the journal's page and every loop's filters, read concurrently.
    func topicsReport(_ query: RetainedTopicsQuery, on eventLoop: any EventLoop) -> EventLoopFuture<TopicsReport> {
        journal.retainedTopics(query, on: eventLoop).and(subscriptionFilters(on: eventLoop)).map { page, filters in
            TopicsReport(page: page, filterCounts: filters, limit: query.limit)
        }
    }
}
