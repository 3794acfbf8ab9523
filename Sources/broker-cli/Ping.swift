import ArgumentParser
import BrokerClient
import BrokerProtocol

/// `broker-cli ping`: connect, print the welcome and a round trip.
struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect, print the broker's welcome and the round-trip time of a ping.")

    @Option(name: .shortAndLong, help: "Number of pings.")
    var count = 1

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let settings = connection.settings()
        let client = connection.makeClient(settings)
        let welcome: Welcome
        do {
            welcome = try await client.connect()
        } catch {
            fail(error, doing: "connect")
        }
        emit("connected to \(settings.url): \(welcome.server), protocol \(welcome.protocolVersion), session \(welcome.session), maxMessageBytes \(welcome.maxMessageBytes), epoch \(welcome.epoch.isEmpty ? "-" : welcome.epoch)")
        for _ in 0..<max(1, count) {
            do {
                let rtt = try await client.ping()
                emit("pong in \(Self.milliseconds(rtt)) ms")
            } catch {
                fail(error, doing: "ping")
            }
        }
        await client.close()
    }

    static func milliseconds(_ duration: Duration) -> String {
        let parts = duration.components
        let ms = Double(parts.seconds) * 1000 + Double(parts.attoseconds) / 1e15
        return "\((ms * 1000).rounded() / 1000)"
    }
}
