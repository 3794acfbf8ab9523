import BrokerProtocol
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1

/// Parsing and classification shared by the HTTP routes.
extension HTTPRequestHandler {
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
    /// Host, Origin and credential checks (upgrades and the HTTP API): the ones in force, which
    /// a reload replaces (`replaceAdmission`).
    var admission: Admission { currentAdmission.withLockedValue { $0 } }
    private let currentAdmission: NIOLockedValueBox<Admission>

    init(isListening: @escaping @Sendable () -> Bool, renderMetrics: (@Sendable () -> [UInt8])?, admission: Admission) {
        self.isListening = isListening
        self.renderMetrics = renderMetrics
        self.currentAdmission = NIOLockedValueBox(admission)
    }

    /// Checks the requests and upgrades from now on with `admission` (new keys and tokens).
    func replaceAdmission(_ admission: Admission) {
        currentAdmission.withLockedValue { $0 = admission }
    }
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
