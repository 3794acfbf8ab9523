import ArgumentParser
import BrokerJournal
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
            discussion: "Works on the data directory of a stopped broker (the running broker holds its lock).")

        @Argument(help: "Topic filter, e.g. sensors/# (wildcards allowed).")
        var filter: String

        @Option(help: "Data directory of the broker.")
        var dataDir = "./data"

        func run() async throws {
            var logger = Logger(label: "broker")
            logger.logLevel = .warning
            let journal: SQLiteJournal
            do {
                journal = try SQLiteJournal.open(directory: dataDir, configuration: JournalConfiguration(), logger: logger)
            } catch {
                Serve.fail(error)
            }
            let loop = MultiThreadedEventLoopGroup.singleton.any()
            let removed = try await journal.clear(filter: filter, on: loop).get()
            await journal.close()
            print("cleared \(removed) retained message(s) matching \(filter)")
        }
    }
}
