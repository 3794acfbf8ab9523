// A Swift backend pushing chart points to the broker with BrokerClient (Sources/BrokerClient):
// one retained point per second on metrics/cpu, as {"t": <ms>, "value": <number>}, the shape
// live-chart.html draws. Add it as an executable target depending on the BrokerClient product
// (docs/client-library.md); it is not built by this repository.
import BrokerClient
import Foundation

struct Point: Encodable {
    var t: Int64       // milliseconds since 1970
    var value: Double
}

@main
struct PushEvents {
    static func main() async throws {
        var configuration = BrokerClient.Configuration()
        // A JWT whose publish claim covers metrics/# (or a client token), when the broker needs one.
        configuration.token = ProcessInfo.processInfo.environment["BROKER_TOKEN"]
        let client = BrokerClient(
            url: ProcessInfo.processInfo.environment["BROKER_URL"] ?? "ws://127.0.0.1:8080/ws",
            configuration: configuration)
        let welcome = try await client.connect()
        print("connected to \(welcome.server), epoch \(welcome.epoch)")

        var i = 0.0
        while true {
            let point = Point(
                t: Int64(Date().timeIntervalSince1970 * 1000),
                value: (50 + 30 * sin(i / 6) + 10 * sin(i / 1.7)).rounded(toPlaces: 1))
            do {
                // Retained: journaled before the ack, replayed to pages that resume with `since`.
                let ack = try await client.publish("metrics/cpu", json: point, retain: true)
                print("point \(Int(i)) at offset \(ack.offset ?? 0)")
            } catch {
                // While the broker restarts the client reconnects by itself; this point is skipped.
                print("publish failed: \(error)")
            }
            i += 1
            try await Task.sleep(for: .seconds(1))
        }
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let scale = pow(10, Double(places))
        return (self * scale).rounded() / scale
    }
}
