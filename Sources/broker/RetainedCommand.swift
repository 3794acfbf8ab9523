import ArgumentParser
import BrokerJournal
import Foundation
import Logging
import NIOPosix

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

        @Option(help: "API key of the running broker's HTTP API, when it has one (default: $BROKER_AUTH_API_KEY).")
        var apiKey: String?

        func run() async throws {
            let removed: Int
            if let dataDir {
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

        private func clearOnline() async throws -> Int {
            var components = URLComponents(string: url)
            components?.path = "/api/retained"
            components?.queryItems = [URLQueryItem(name: "topic", value: filter)]
            // `+` is a wildcard here, not an encoded space.
            let encodedQuery = components?.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            components?.percentEncodedQuery = encodedQuery
            guard let endpoint = components?.url else { throw ValidationError("invalid --url \(url)") }
            var request = URLRequest(url: endpoint)
            request.httpMethod = "DELETE"
            if let key = apiKey ?? ProcessInfo.processInfo.environment["BROKER_AUTH_API_KEY"], !key.isEmpty {
                request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization")
            }
            let (body, response): (Data, URLResponse)
            do {
                (body, response) = try await URLSession.shared.data(for: request)
            } catch {
                FileHandle.standardError.write(Data("broker: cannot reach the broker at \(url): \(error.localizedDescription)\n".utf8))
                throw ExitCode(1)
            }
            let status = (response as? HTTPURLResponse)?.statusCode ?? 0
            let json = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            guard status == 200, let cleared = json?["cleared"] as? Int else {
                let message = ((json?["error"] as? [String: Any])?["message"] as? String) ?? "HTTP \(status)"
                FileHandle.standardError.write(Data("broker: clear refused: \(message)\n".utf8))
                throw ExitCode(1)
            }
            return cleared
        }
    }
}
