import ArgumentParser
import BrokerHTTPClient
import BrokerJournal
import BrokerJournalPostgres
import Foundation
import Logging
import NIOPosix

struct Retained: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage retained messages.",
        subcommands: [Clear.self])

    struct Clear: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete the retained messages of every topic matching FILTER.",
            discussion: """
                Against a running broker (the default), this calls its HTTP API: \
                DELETE /api/retained?topic=FILTER on --url. Against a stopped broker, give \
                --data-dir and the journal is opened directly (a running broker holds the \
                directory's lock, so this refuses while one runs).
                """)

        @Argument(help: "Topic filter, e.g. sensors/# (wildcards allowed).")
        var filter: String

        @Option(help: "Base URL of the running broker's HTTP listener.")
        var url = "http://127.0.0.1:8080"

        @Option(help: "Data directory of a stopped broker (clears offline instead of over HTTP).")
        var dataDir: String?

        @Option(help: "PostgreSQL URL of a cluster's journal (clears it directly instead of over HTTP; see docs/cluster.md).")
        var clusterPostgresURL: String?

        @Option(help: "API key of the running broker's HTTP API, when it has one (default: $BROKER_AUTH_API_KEY).")
        var apiKey: String?

        func run() async throws {
            let removed: Int
            if let clusterPostgresURL {
                removed = try await clearCluster(clusterPostgresURL)
            } else if let dataDir {
                removed = try await clearOffline(dataDir)
            } else {
                removed = try await clearOnline()
            }
            print("cleared \(removed) retained message(s) matching \(filter)")
        }

        private func clearOffline(_ directory: String) async throws -> Int {
            var logger = Logger(label: "broker")
            logger.logLevel = .warning
            let journal: SQLiteJournal
            do {
                journal = try SQLiteJournal.open(directory: directory, configuration: JournalConfiguration(), logger: logger)
            } catch {
                Serve.fail(error)
            }
            let loop = MultiThreadedEventLoopGroup.singleton.any()
            let removed = try await journal.clear(filter: filter, on: loop).get()
            await journal.close()
            return removed
        }

        /// Clears in the cluster's journal directly; the brokers keep running (their clears and
        /// appends are serialized by PostgreSQL).
        private func clearCluster(_ url: String) async throws -> Int {
            var logger = Logger(label: "broker")
            logger.logLevel = .warning
            let journal: PostgresJournal
            do {
                journal = try await PostgresJournal.open(url: try PostgresURL(url), nodeName: "broker-retained-clear", logger: logger)
            } catch {
                Serve.fail(error)
            }
            let loop = MultiThreadedEventLoopGroup.singleton.any()
            let removed = try await journal.clear(filter: filter, on: loop).get()
            await journal.close()
            return removed
        }

        private func clearOnline() async throws -> Int {
            // `+` is a wildcard here, not an encoded space: the filter is percent-encoded whole.
            var allowed = CharacterSet.urlQueryAllowed
            allowed.remove(charactersIn: "+&=#")
            guard let query = filter.addingPercentEncoding(withAllowedCharacters: allowed) else {
                throw ValidationError("invalid filter \(filter)")
            }
            let base = url.hasSuffix("/") ? String(url.dropLast()) : url
            var headers: [(String, String)] = []
            if let key = apiKey ?? ProcessInfo.processInfo.environment["BROKER_AUTH_API_KEY"], !key.isEmpty {
                headers.append(("Authorization", "Bearer \(key)"))
            }
            let request = APIRequest(.DELETE, url: "\(base)/api/retained?topic=\(query)", headers: headers, timeout: .seconds(30))
            let response: APIRequest.Response
            do {
                response = try await request.run()
            } catch {
                if case .badURL = error { throw ValidationError("invalid --url \(url)") }
                FileHandle.standardError.write(Data("broker: cannot reach the broker at \(url): \(error)\n".utf8))
                throw ExitCode(1)
            }
            let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
            guard response.status == 200, let cleared = json?["cleared"] as? Int else {
                let message = ((json?["error"] as? [String: Any])?["message"] as? String) ?? "HTTP \(response.status)"
                FileHandle.standardError.write(Data("broker: clear refused: \(message)\n".utf8))
                throw ExitCode(1)
            }
            return cleared
        }
    }
}
