import Foundation
import NIOSSL
import PostgresNIO

/// `cluster.postgres-url`: `postgres://user[:password]@host[:port]/database[?sslmode=…]`, as
/// libpq reads it. `sslmode` is `disable`, `prefer` (the default) or `require`; `host=/dir` in
/// the query connects through the unix socket `/dir/.s.PGSQL.<port>` instead.
public struct PostgresURL: Sendable, CustomStringConvertible {
    enum Endpoint: Sendable {
        case tcp(host: String, port: Int)
        case socket(path: String)
    }

    enum TLSMode: String, Sendable {
        case disable, prefer, require
    }

    let endpoint: Endpoint
    let username: String
    let password: String?
    let database: String
    let tls: TLSMode

    public init(_ text: String) throws(PostgresURLError) {
        guard let components = URLComponents(string: text),
            components.scheme == "postgres" || components.scheme == "postgresql"
        else { throw PostgresURLError("not a postgres:// URL") }
        let query = Dictionary((components.queryItems ?? []).map { ($0.name, $0.value ?? "") }) { $1 }
        let port = components.port ?? 5432
        if let socketDirectory = query["host"], socketDirectory.hasPrefix("/") {
            endpoint = .socket(path: "\(socketDirectory)/.s.PGSQL.\(port)")
        } else {
            guard let host = components.host, !host.isEmpty else { throw PostgresURLError("the URL names no host") }
            endpoint = .tcp(host: host, port: port)
        }
        username = components.user.flatMap { $0.removingPercentEncoding } ?? "postgres"
        password = components.password.flatMap { $0.removingPercentEncoding }
        let path = String(components.path.drop { $0 == "/" })
        database = path.isEmpty ? username : (path.removingPercentEncoding ?? path)
        guard let mode = TLSMode(rawValue: query["sslmode"] ?? "prefer") else {
            throw PostgresURLError("sslmode must be disable, prefer or require")
        }
        tls = mode
    }

    /// The URL without its password, for logs.
    public var description: String {
        let place: String
        switch endpoint {
        case .tcp(let host, let port): place = "\(host):\(port)"
        case .socket(let path): place = path
        }
        return "postgres://\(username)@\(place)/\(database)"
    }

    var clientConfiguration: PostgresClient.Configuration {
        let tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        switch endpoint {
        case .socket(let path):
            return .init(unixSocketPath: path, username: username, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch self.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(tlsConfiguration)
            case .require: tls = .require(tlsConfiguration)
            }
            return .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
    }

    func connectionConfiguration() throws -> PostgresConnection.Configuration {
        switch endpoint {
        case .socket(let path):
            return .init(unixSocketPath: path, username: username, password: password, database: database)
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            switch self.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
            return .init(host: host, port: port, username: username, password: password, database: database, tls: tls)
        }
    }
}

public struct PostgresURLError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = "cluster.postgres-url: \(description)" }
}
