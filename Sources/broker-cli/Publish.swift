import ArgumentParser
import BrokerClient
import BrokerProtocol
import Foundation

/// `broker-cli publish TOPIC [DATA]`: publish and wait for the ack.
struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a message (or each line of stdin, or all of stdin) and wait for the broker's ack.",
        discussion: """
            DATA is sent as the JSON data of a text publish. As a convenience, DATA that is not \
            valid JSON is sent as a JSON string: `publish t hello` sends "hello", while \
            `publish t '{"n":1}'` sends the object. With --binary, the bytes of DATA (UTF-8) are \
            sent as-is in a binary frame.

            -l/--lines (or DATA '-') publishes each line of stdin as its own message (empty lines \
            are skipped), waiting for each ack before sending the next. -s/--stdin-message \
            publishes all of stdin as one message (like DATA: JSON as is, other text as a JSON \
            string, bytes as-is with --binary). --file F publishes the whole file as one message \
            (it must be JSON unless --binary).

            --repeat N publishes the message N times, --interval S seconds apart.

            For a retained publish, prints `offset N` (the journal offset) unless --quiet.
            """)

    @Argument(help: "Topic name, e.g. 'demo/x'.")
    var topic: String

    @Argument(help: "The message; '-' for each line of stdin. Omit with --file, -s or -l.")
    var data: String?

    @Flag(name: .shortAndLong, help: "Retain the message in the broker's journal.")
    var retain = false

    @Flag(help: "Send opaque bytes in a binary frame instead of JSON.")
    var binary = false

    @Option(help: "Publish the contents of this file.")
    var file: String?

    @Flag(name: [.customShort("s"), .customLong("stdin-message")], help: "Publish all of stdin as one message.")
    var stdinMessage = false

    @Flag(name: [.customShort("l"), .long], help: "Publish each line of stdin as a message (as DATA '-').")
    var lines = false

    @Option(help: "Publish the message this many times.")
    var `repeat` = 1

    @Option(help: ArgumentHelp("Seconds between repeated publishes.", valueName: "seconds"))
    var interval: Double = 0

    @Flag(name: .shortAndLong, help: "Do not print offsets.")
    var quiet = false

    @OptionGroup var connection: ConnectionOptions

    private var readsLines: Bool { lines || data == "-" }

    func validate() throws {
        let sources = [data != nil, file != nil, stdinMessage, lines].filter { $0 }.count
        if sources == 0 { throw ValidationError("give DATA, '-' or -l for lines of stdin, -s for all of stdin, or --file F") }
        if sources > 1 { throw ValidationError("give only one of DATA, --file, -s/--stdin-message, -l/--lines") }
        if `repeat` < 1 { throw ValidationError("--repeat must be ≥ 1") }
        if !(interval >= 0 && interval <= CLILimits.maxSeconds) { throw ValidationError("--interval must be between 0 and \(Int(CLILimits.maxSeconds))") }
        if readsLines, `repeat` != 1 { throw ValidationError("--repeat does not go with lines of stdin") }
        do { try Topic.validateName(topic) } catch { throw ValidationError("invalid topic '\(topic)': \(error)") }
    }

    func run() async throws {
        var message: [UInt8]?
        if let file {
            guard let contents = FileManager.default.contents(atPath: file) else {
                fail(.badArguments, "cannot read \(file)")
            }
            message = Array(contents)
            if !binary, !PublishPayload.isJSON(message!) {
                fail(.badArguments, "\(file) is not valid JSON (use --binary to send it as bytes)")
            }
        } else if stdinMessage {
            message = Array(FileHandle.standardInput.readDataToEndOfFile())
        } else if let data, data != "-" {
            message = Array(data.utf8)
        }

        let settings = connection.settings()
        let client = connection.makeClient(settings)
        do {
            try await client.connect()
        } catch {
            fail(error, doing: "connect")
        }
        if let message {
            for round in 0..<`repeat` {
                if round > 0, interval > 0 { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
                await send(message, with: client)
            }
        } else {
            while let line = readLine(strippingNewline: true) {
                if line.isEmpty { continue }
                await send(Array(line.utf8), with: client)
            }
        }
        await client.close()
    }

    /// Publishes one message, prints its offset, exits on failure.
    private func send(_ bytes: [UInt8], with client: BrokerClient) async {
        do {
            let ack: PublishAck
            if binary {
                ack = try await client.publish(topic, bytes: bytes, retain: retain)
            } else {
                ack = try await client.publish(topic, rawJSON: PublishPayload.json(from: bytes), retain: retain)
            }
            if let offset = ack.offset, !quiet { emit("offset \(offset)") }
        } catch {
            fail(error, doing: "publish to \(topic)")
        }
    }
}
