import Foundation

/// Every path the broker's HTTP side answers, what it is for, and which listener serves it.
enum HTTPRoute: Equatable, Sendable {
    case healthz
    case readyz
    case metrics
    case stats
    case publish
    case publishBatch
    case retained
    /// `/api/connections`
    case connections
    /// `/api/connections/{id}`
    case connection(id: String)
    case topics
    /// `/dashboard`, `/dashboard/` (the index) and `/dashboard/{file}`.
    case dashboard(file: String)
    /// The WebSocket endpoint (and the echo endpoint when configured).
    case webSocket

    /// Who may call a route.
    enum Audience: Equatable {
        /// Health probes: open, and served whatever the `Host`.
        case probe
        /// The client API: the API key or a client's credentials within their permissions.
        case client
        /// The operator API: the API key or an admin token; only on the admin listener when there
        /// is one.
        case operatorAPI
        /// Static files that hold no data: open (their data calls need credentials).
        case page
        case webSocket
    }

    init?(path: String, webSocketPaths: Set<String>) {
        switch path {
        case "/healthz": self = .healthz
        case "/readyz": self = .readyz
        case "/metrics": self = .metrics
        case "/api/stats": self = .stats
        case "/api/publish": self = .publish
        case "/api/publish/batch": self = .publishBatch
        case "/api/retained": self = .retained
        case "/api/connections": self = .connections
        case "/api/topics": self = .topics
        case "/dashboard", "/dashboard/": self = .dashboard(file: "index.html")
        case _ where webSocketPaths.contains(path): self = .webSocket
        case _ where path.hasPrefix("/api/connections/"):
            let id = path.dropFirst("/api/connections/".count)
            guard !id.isEmpty, !id.contains("/") else { return nil }
            self = .connection(id: String(id).removingPercentEncoding ?? String(id))
        case _ where path.hasPrefix("/dashboard/"):
            self = .dashboard(file: String(path.dropFirst("/dashboard/".count)))
        default: return nil
        }
    }

    var audience: Audience {
        switch self {
        case .healthz, .readyz: .probe
        case .publish, .publishBatch, .retained: .client
        case .metrics, .stats, .connections, .connection, .topics: .operatorAPI
        case .dashboard: .page
        case .webSocket: .webSocket
        }
    }

    /// The `Allow` header: the methods the route answers (`OPTIONS` is added for CORS).
    var allowedMethods: String {
        switch self {
        case .healthz, .readyz, .dashboard: "GET, HEAD"
        case .metrics, .stats, .connections, .topics, .webSocket: "GET"
        case .publish, .publishBatch: "POST"
        case .retained: "GET, DELETE"
        case .connection: "DELETE"
        }
    }
}

/// Which routes one listener serves. Without an admin listener the one listener serves every
/// route; with one (`admin.port`), the operator routes and the dashboard move there and the
/// public listener answers 404 for them. The admin listener serves everything (the dashboard it
/// serves also uses `/ws`, `/api/retained` and `/api/publish`, under the same credentials).
enum ListenerRole: Sendable, Equatable {
    /// The only listener.
    case combined
    /// The public listener beside an admin listener.
    case publicOnly
    /// The admin listener.
    case admin

    func serves(_ route: HTTPRoute) -> Bool {
        switch (self, route.audience) {
        case (.publicOnly, .operatorAPI), (.publicOnly, .page): false
        default: true
        }
    }
}
