import ArgumentParser
import BrokerClient
import BrokerProtocol
import Foundation

/// `broker-cli publish TOPIC [DATA]`: publish and wait for the ack.
struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish a message (or each line of stdin) and wait for the broker's ack.",
        discussion: """
            DATA is sent as the JSON data of a text publish. As a convenience, DATA that is not
            valid JSON is sent as a JSON string: `publish t hello` sends "hello", while
            `publish t '{"n":1}'` sends the object. With --binary, the bytes of DATA (UTF-8) are
            sent as-is in a binary frame.

            DATA '-' publishes each line of stdin as its own message (empty lines are skipped),
            waiting for each ack before sending the next. --file F publishes the whole file as one
            message (it must be JSON unless --binary).

            For a retained publish, prints `offset N` (the journal offset) unless --quiet.
            """)

    @Argument(help: "Topic name, e.g. 'demo/x'.")
    var topic: String

    @Argument(help: "The message; '-' for each line of stdin. Omit with --file.")
    var data: String?

    @Flag(help: "Retain the message in the broker's journal.")
    var retain = false

    @Flag(help: "Send opaque bytes in a binary frame instead of JSON.")
    var binary = false

    @Option(help: "Publish the contents of this file.")
    var file: String?

    @Flag(name: .shortAndLong, help: "Do not print offsets.")
    var quiet = false

    @OptionGroup var connection: ConnectionOptions

    func validate() throws {
        switch (data, file) {
        case (nil, nil): throw ValidationError("give DATA, '-' for stdin, or --file F")
        case (.some, .some): throw ValidationError("give either DATA or --file, not both")
        default: break
        }
        do { try Topic.validateName(topic) } catch { throw ValidationError("invalid topic '\(topic)': \(error)") }
    }

    func run() async throws {
        var fileContents: [UInt8]?
        if let file {
            guard let contents = FileManager.default.contents(atPath: file) else {
                fail(.badArguments, "cannot read \(file)")
            }
            fileContents = Array(contents)
            if !binary, !PublishPayload.isJSON(fileContents!) {
                fail(.badArguments, "\(file) is not valid JSON (use --binary to send it as bytes)")
            }
        }

        let client = connection.makeClient()
        do {
            try await client.connect()
        } catch {
            fail(error, doing: "connect")
        }
        if let fileContents {
            await send(fileContents, with: client)
        } else if data == "-" {
            while let line = readLine(strippingNewline: true) {
                if line.isEmpty { continue }
                await send(Array(line.utf8), with: client)
            }
        } else if let data {
            await send(Array(data.utf8), with: client)
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
