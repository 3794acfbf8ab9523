import BrokerServer

/// `# HELP` lines for the broker's metric families.
///
/// swift-metrics has no way to carry a help text to the registry, and swift-prometheus refuses a
/// family registered twice with different help texts, so the help is added to the exposition
/// text instead, in front of each family's `# TYPE` line.
public enum MetricsHelp {
    /// Help text per metric family (docs/operations.md has the same list with the labels).
    public static let texts: [String: String] = [
        "broker_connections": "Open WebSocket connections.",
        "broker_connects_total": "WebSocket connections opened.",
        "broker_disconnects_total": "WebSocket connections ended, by reason.",
        "broker_upgrades_refused_total": "WebSocket upgrades refused before upgrading, by reason.",
        "broker_subscriptions": "Subscriptions over all connections.",
        "broker_messages_published_total": "Publishes received (WebSocket and HTTP).",
        "broker_published_bytes_total": "Payload bytes of the publishes received.",
        "broker_messages_delivered_total": "Messages written to subscribers.",
        "broker_delivered_bytes_total": "Frame bytes written to subscribers.",
        "broker_messages_replayed_total": "Retained messages replayed to subscribers.",
        "broker_protocol_errors_total": "Requests refused with an error, and connections closed for broken frames, by code.",
        BrokerMetrics.journalAppendLabel: "Time from a retained publish to its commit.",
        "broker_journal_bytes": "Retained payload bytes in the journal.",
        "broker_journal_messages": "Retained messages in the journal.",
        "broker_journal_topics": "Topics with retained messages in the journal.",
        "broker_journal_last_offset": "Offset of the newest retained message.",
        "broker_journal_pruned_messages_total": "Retained messages removed by retention over the journal's life (kept across restarts).",
        "broker_compression_input_bytes_total": "Frame bytes compressed with permessage-deflate (each shared frame once).",
        "broker_compression_output_bytes_total": "Bytes of the compressed frames (their ratio to the input is the compression ratio).",
        "broker_uptime_seconds": "Seconds since the broker started.",
        "broker_build_info": "Always 1; the label version is the broker's release.",
    ]

    /// `exposition` (Prometheus text format) with a `# HELP` line before every `# TYPE` line of
    /// a known family that has none.
    public static func adding(to exposition: [UInt8]) -> [UInt8] {
        let typePrefix = Array("# TYPE ".utf8)
        var result: [UInt8] = []
        result.reserveCapacity(exposition.count + texts.count * 64)
        var previousLineIsHelp = false
        for line in exposition.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            if line.starts(with: typePrefix), !previousLineIsHelp {
                let name = line.dropFirst(typePrefix.count).prefix { $0 != UInt8(ascii: " ") }
                if let text = texts[String(decoding: name, as: UTF8.self)] {
                    result.append(contentsOf: "# HELP ".utf8)
                    result.append(contentsOf: name)
                    result.append(UInt8(ascii: " "))
                    result.append(contentsOf: text.utf8)
                    result.append(UInt8(ascii: "\n"))
                }
            }
            previousLineIsHelp = line.starts(with: Array("# HELP ".utf8))
            result.append(contentsOf: line)
            result.append(UInt8(ascii: "\n"))
        }
        // split kept the empty piece after a final newline; don't add one that wasn't there.
        result.removeLast()
        return result
    }
}
