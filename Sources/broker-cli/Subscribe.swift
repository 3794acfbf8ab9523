import ArgumentParser
import BrokerClient
import BrokerProtocol
import Dispatch
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `broker-cli subscribe FILTER...`: one line per message until interrupted, `--count` messages
/// or `--wait` seconds.
struct Subscribe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the messages of one or more topic filters, one line each, until interrupted.",
        discussion: """
            Each line is {"topic":"...","data":<the published JSON>} for a JSON message, or \
            {"topic":"...","binary":"<base64>"} for a binary one, with "offset":N when the message \
            was retained and "replay":true when it was replayed from the journal. --raw prints the \
            payload only (a JSON string unescaped, other JSON as published, binary bytes as-is); \
            --format prints a template, e.g. --format '{topic} {data} {offset}'. Placeholders: \
            {topic} {data} {text} {offset} {replay} {binary} {bytes} {epoch} {json}; {{ and }} are \
            braces; \\n and \\t are a newline and a tab.

            A message that matches several of the filters is printed once. Messages of one topic \
            keep their order; messages of topics matched by different filters may interleave.

            To resume a script safely, keep the last offset and the epoch ({offset} and {epoch}) \
            and pass them back as --since OFFSET --epoch EPOCH: when the journal is not the one the \
            offset came from, the broker sends the current state instead of a wrong replay.

            -C/--count N exits with 0 after N messages; -W/--wait S exits after S seconds from \
            connecting: with 4 when --count was given and not reached, else with 0.

            The connection is re-established by itself if it drops (a note goes to stderr); \
            when the subscription asked for retained messages it resumes where it left off. \
            Ctrl-C (SIGINT) or SIGTERM ends it with exit code 0.
            """)

    @Argument(help: "Topic filters, e.g. 'demo/#' 'sensors/+/temp'.")
    var filters: [String] = []

    @Option(help: "Replay the newest N retained messages of each matching topic (broker default 1; 0 for none).")
    var history: Int?

    @Option(help: "Replay every retained message after this offset (overrides --history).")
    var since: UInt64?

    @Option(help: "The journal epoch --since refers to (printed by {epoch}); another epoch replays the current state instead.")
    var epoch: String?

    @Option(name: [.customShort("C"), .long], help: "Exit with 0 after this many messages.")
    var count: Int?

    @Option(
        name: [.customShort("W"), .customLong("wait")],
        help: ArgumentHelp("Exit after this many seconds from connecting (4 if --count was not reached).", valueName: "seconds"))
    var wait: Double?

    @OptionGroup var output: OutputOptions

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        if filters.isEmpty { throw ValidationError("give at least one topic filter") }
        if let history, history < 0 { throw ValidationError("--history must be ≥ 0") }
        if epoch != nil, since == nil { throw ValidationError("--epoch needs --since") }
        if let count, count < 1 { throw ValidationError("--count must be ≥ 1") }
        if let wait, !(wait > 0 && wait <= CLILimits.maxSeconds) { throw ValidationError("--wait must be positive and at most \(Int(CLILimits.maxSeconds))") }
        // Like publish: a malformed filter is a usage error (2), even when the broker is down.
        for filter in filters {
            do { try Topic.validateFilter(filter) } catch { throw ValidationError("invalid topic filter '\(filter)': \(error)") }
        }
    }

    func run() async throws {
        let settings = connection.settings()
        let format = output.outputFormat()
        let epochs = CurrentEpoch()
        let url = settings.url
        let client = connection.makeClient(settings) { event in
            switch event {
            case .disconnected(let reason):
                writeStderr("broker-cli: connection to \(url) lost (\(reason)); reconnecting\n")
            case .connected(let welcome):
                epochs.value = welcome.epoch
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
            epochs.value = try await client.connect().epoch
        } catch {
            fail(error, doing: "connect")
        }
        var subscriptions: [BrokerSubscription] = []
        for filter in filters {
            do {
                subscriptions.append(try await client.subscribe(filter, history: history, since: since, epoch: epoch))
            } catch BrokerClientError.closed {
                return  // interrupted while subscribing
            } catch {
                fail(error, doing: "subscribe \(filter)")
            }
        }
        let end = await Self.consume(subscriptions, count: count, wait: wait) { message in
            emit(bytes: format.render(message, epoch: epochs.value))
        }
        await client.close()
        switch end {
        case .finished, .counted: return
        case .waited: if count != nil { terminate(.timedOutBeforeCount) }
        case .failed(let filter, let error): fail(error, doing: "subscription \(filter)")
        }
    }

    enum End {
        case finished
        case counted
        case waited
        case failed(filter: String, error: any Error)
    }

    private enum Event {
        case message(BrokerMessage)
        case ended(filter: String, error: (any Error)?)
        case waited
    }

    /// Prints the messages of every subscription (each once: a message goes to every local
    /// subscription whose filter matches, so it is taken from the first of them only) until
    /// `count` messages, `wait` seconds, or the subscriptions' end.
    static func consume(
        _ subscriptions: [BrokerSubscription], count: Int?, wait: Double?, _ output: @escaping @Sendable (BrokerMessage) -> Void
    ) async -> End {
        let filters = subscriptions.map(\.filter)
        let (events, sink) = AsyncStream.makeStream(of: Event.self)
        return await withTaskGroup(of: Void.self) { group in
            for (index, subscription) in subscriptions.enumerated() {
                group.addTask {
                    do {
                        for try await message in subscription
                        where filters.firstIndex(where: { Topic.matches(filter: $0, name: message.topic) }) == index {
                            sink.yield(.message(message))
                        }
                        sink.yield(.ended(filter: subscription.filter, error: nil))
                    } catch {
                        sink.yield(.ended(filter: subscription.filter, error: error))
                    }
                }
            }
            if let wait {
                group.addTask {
                    // The product's own deadline (-W), not a test's guess.
                    try? await Task.sleep(for: .milliseconds(Int64(wait * 1000)))
                    if !Task.isCancelled { sink.yield(.waited) }
                }
            }
            var printed = 0
            var ended = 0
            var end = End.finished
            loop: for await event in events {
                switch event {
                case .message(let message):
                    output(message)
                    printed += 1
                    if let count, printed >= count {
                        end = .counted
                        break loop
                    }
                case .waited:
                    end = .waited
                    break loop
                case .ended(_, nil):
                    ended += 1
                    if ended == subscriptions.count { break loop }
                case .ended(let filter, let error?):
                    end = .failed(filter: filter, error: error)
                    break loop
                }
            }
            group.cancelAll()
            sink.finish()
            return end
        }
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

/// The journal epoch of the current connection, for `{epoch}` (a reconnect may change it).
final class CurrentEpoch: @unchecked Sendable {
    private let lock = NSLock()
    private var epoch: String?

    var value: String? {
        get { lock.withLock { epoch } }
        set { lock.withLock { epoch = newValue } }
    }
}

/// `--raw` and `--format`, shared by `subscribe` and `retained ls`.
struct OutputOptions: ParsableArguments {
    @Flag(help: "Print the payload only: a JSON string unescaped, other JSON as published, binary bytes as-is.")
    var raw = false

    @Option(help: ArgumentHelp("Print each message with this template, e.g. '{topic} {data} {offset}'.", valueName: "template"))
    var format: String?

    func validate() throws {
        if raw, format != nil { throw ValidationError("give either --raw or --format, not both") }
        if let format {
            do { _ = try FormatTemplate(parsing: format) } catch { throw ValidationError(error.description) }
        }
    }

    func outputFormat() -> OutputFormat {
        if raw { return .raw }
        if let format, let template = try? FormatTemplate(parsing: format) { return .template(template) }
        return .jsonLine
    }
}
