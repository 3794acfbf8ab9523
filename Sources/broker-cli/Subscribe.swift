import ArgumentParser
import BrokerClient
import BrokerProtocol
import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `broker-cli subscribe FILTER`: one JSON line per message until interrupted.
struct Subscribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages of a topic filter, one JSON line each, until interrupted.",
        discussion: """
            Each line is {"topic":"...","data":<the published JSON>} for a JSON message, or
            {"topic":"...","binary":"<base64>"} for a binary one, with "offset":N when the message
            was retained and "replay":true when it was replayed from the journal.

            The connection is re-established by itself if it drops (a note goes to stderr);
            when the subscription asked for retained messages it resumes where it left off.
            Ctrl-C (SIGINT) or SIGTERM ends it with exit code 0.
            """)

    @Argument(help: "Topic filter, e.g. 'demo/#' or 'sensors/+/temp'.")
    var filter: String

    @Option(help: "Replay the newest N retained messages of each matching topic (broker default 1; 0 for none).")
    var history: Int?

    @Option(help: "Replay every retained message after this offset (overrides --history).")
    var since: UInt64?

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if let history, history < 0 { throw ValidationError("--history must be ≥ 0") }
        // Like publish: a malformed filter is a usage error (2), even when the broker is down.
        do { try Topic.validateFilter(filter) } catch { throw ValidationError("invalid topic filter '\(filter)': \(error)") }
    }

    func run() async throws {
        let url = connection.resolvedURL
        let client = connection.makeClient { event in
            switch event {
            case .disconnected(let reason):
                writeStderr("broker-cli: connection to \(url) lost (\(reason)); reconnecting\n")
            case .connected:
                break
            case .gap(let filter, let since):
                writeStderr("broker-cli: warning: \(filter) resumed with a gap after offset \(since.map(String.init) ?? "?"): some messages are missing\n")
            case .dropped(let filter, let count):
                if count == 1 || count % 1000 == 0 {
                    writeStderr("broker-cli: warning: output too slow, \(count) messages of \(filter) dropped\n")
                }
            case .subscriptionFailed, .reconnecting:
                break
            }
        }
        let signals = Self.onTermination { Task { await client.close() } }
        defer { signals.forEach { $0.cancel() } }

        do {
            try await client.connect()
        } catch {
            fail(error, doing: "connect")
        }
        let subscription: BrokerSubscription
        do {
            subscription = try await client.subscribe(filter, history: history, since: since)
        } catch BrokerClientError.closed {
            return  // interrupted while subscribing
        } catch {
            fail(error, doing: "subscribe \(filter)")
        }
        do {
            for try await message in subscription {
                emit(message.jsonLine)
            }
        } catch {
            fail(error, doing: "subscription \(filter)")
        }
        await client.close()
    }

    /// Runs `action` on SIGINT and SIGTERM (instead of the default of dying mid-line).
    static func onTermination(_ action: @escaping @Sendable () -> Void) -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: action)
            source.resume()
            return source
        }
    }
}
