import BrokerTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Lame duck in the `broker` executable: SIGTERM stops accepting at once and closes the clients
/// one after another over `lame-duck-duration`. A long window (the i-th of three clients at i×200 s)
/// makes the spread visible as counts, with nothing timed: right after SIGTERM one client has its
/// 1001 and the other two are still served. (The spread itself, on the loop's clock: LameDuckTests.)
@Suite(.spawnsChildProcesses) struct ProcessLameDuckTests {
    @Test func sigtermClosesOneClientAtOnceAndServesTheOthersWhileNewConnectionsAreRefused() async throws {
        let data = temporaryDirectory("broker-lame-duck")
        defer { removeDirectory(data) }
        let broker = try ChildProcess(
            "broker", ["serve", "--port", "0", "--data-dir", data, "--shutdown-grace", "600"],
            environment: ["BROKER_LAME_DUCK_DURATION": "600"])
        let port = try await broker.listeningPort()
        var clients: [RawWebSocketClient] = []
        for _ in 0..<3 {
            let client = try await RawWebSocketClient.connect(port: port)
            _ = try await client.nextMessage()
            clients.append(client)
        }

        broker.signal(SIGTERM)
        // Ping every client still open until one answers with its close frame instead of a pong:
        // the first in line gets 1001 at once, the two others not before 200 s.
        var closed: [Int: UInt16] = [:]
        var served: Set<Int> = []
        try await eventually("a first client closed with 1001; stderr: \(broker.stderr)") {
            served = []
            for (index, client) in clients.enumerated() where closed[index] == nil {
                // The broker may have closed the socket already (its close timeout ran out while a
                // loaded machine kept this loop away): its 1001 is still to be read.
                try? await client.sendText(#"{"op":"ping","id":\#(index)}"#)
                while true {
                    let frame = try await client.nextFrame(timeout: .seconds(30))
                    if frame.opcode == 0x8 {
                        closed[index] = frame.closeCode ?? 0
                        break
                    }
                    if frame.opcode == 0x1, frame.text.contains("pong") {
                        served.insert(index)
                        break
                    }
                }
            }
            return !closed.isEmpty
        }
        #expect(closed.count == 1 && closed.values.first == 1001, "\(closed)")
        #expect(served.count == 2, "served in the round that saw the first close: \(served)")
        #expect(broker.stderr.contains("lame duck: closing clients") && broker.stderr.contains("clients=3"), "\(broker.stderr)")

        // The listener is closed: nobody new gets in while the lame duck serves the others.
        await #expect(throws: (any Error).self) { _ = try await RawWebSocketClient.connect(port: port) }

        // The clients leave (the first answers its close frame, the others go): the broker has
        // nobody left to wait for and exits 0, long before the window's end.
        for (index, client) in clients.enumerated() {
            if closed[index] != nil { try? await client.send(opcode: 0x8, payload: [0x03, 0xE9]) }
            await client.close()
        }
        #expect(try await broker.waitForExit(timeout: .seconds(30)) == 0, "stderr: \(broker.stderr)")
    }
}
