import Benchmark
import BrokerProtocol
import NIOCore

// Parsing client requests as a connection does on every text frame: `ControlRequest.parseText`
// (JSONScanner and the request-field decoding of ControlMessages.swift), and the binary publish
// (`BinaryCodec.decodePublish`) for comparison. 1,000 requests per iteration
// (`scalingFactor: .kilo`): figures are per request.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let topic = "site-3/building-7/floor-2/room-12/temperature"
    let data = #"{"t":21.5,"unit":"C","sensor":"room12","ts":1732612345678,"v":0}"#
    precondition(data.utf8.count == 64)

    func parse(_ json: String, _ name: String) {
        let frame = ByteBuffer(string: json)
        // Fail at registration, not in the middle of a run, if the request is not what we think.
        guard case .success = ControlRequest.parseText(frame) else { fatalError("\(name): \(json) does not parse") }
        Benchmark(name) { benchmark in
            for _ in benchmark.scaledIterations {
                blackHole(ControlRequest.parseText(frame))
            }
        }
    }

    parse(#"{"op":"publish","topic":"\#(topic)","data":\#(data)}"#, "publish, text, 64 B data")
    parse(#"{"op":"publish","topic":"\#(topic)","data":\#(data),"retain":true,"id":17}"#,
          "publish, text, 64 B data, retain + id")
    parse(#"{"op":"subscribe","topic":"site-3/+/floor-2/#","history":1,"id":"s-1"}"#, "subscribe, wildcard filter + history + id")
    parse(#"{"op":"ping","id":42}"#, "ping + id")

    var binary = ByteBuffer()
    BinaryCodec.encodePublish(
        topic: topic, payload: ByteBuffer(string: data), retain: true, ackID: 17, into: &binary)
    guard case .success = BinaryCodec.decodePublish(binary) else { fatalError("binary publish does not decode") }
    Benchmark("publish, binary, 64 B payload, retain + id") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(BinaryCodec.decodePublish(binary))
        }
    }
}
