import Benchmark
import BrokerProtocol
import NIOCore

// Encoding the server's `message` frame for a 64-byte payload, the way the server does it: one
// buffer per frame, body written behind room for the header, header filled in last
// (`ServerFrame`), text through `ServerMessageEncoder` and binary through `BinaryCodec`. The
// capacity is the server's (`OutboundMessage.encodeFrame`, `RetainedPublication`): payload +
// topic + 64. 1,000 frames per iteration (`scalingFactor: .kilo`): figures are per frame.

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        timeUnits: .nanoseconds,
        scalingFactor: .kilo,
        maxDuration: .seconds(2)
    )

    let allocator = ByteBufferAllocator()
    let topic = "site-3/building-7/floor-2/room-12/temperature"
    let text = ByteBuffer(string: #"{"t":21.5,"unit":"C","sensor":"room12","ts":1732612345678,"v":0}"#)
    precondition(text.readableBytes == 64)
    let binary = ByteBuffer(bytes: (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) })
    let capacity = 64 + topic.utf8.count + 64

    // MARK: Live messages (no offset): encoded once per publish, shared by every subscriber.

    Benchmark("Text message frame, 64 B (live)") { benchmark in
        for _ in benchmark.scaledIterations {
            let frame = ServerFrame.encode(.text, allocator: allocator, bodyCapacity: capacity) { buffer in
                ServerMessageEncoder.message(topic: topic, data: text, offset: nil, replay: false, into: &buffer)
            }
            blackHole(frame)
        }
    }

    Benchmark("Binary message frame, 64 B (live)") { benchmark in
        for _ in benchmark.scaledIterations {
            let frame = ServerFrame.encode(.binary, allocator: allocator, bodyCapacity: capacity) { buffer in
                BinaryCodec.encodeMessage(topic: topic, payload: binary, offset: nil, replay: false, into: &buffer)
            }
            blackHole(frame)
        }
    }

    // MARK: Retained messages: encoded on the publisher's loop but for the offset, completed on
    // the journal writer once the offset is known (RetainedPublication.swift).

    Benchmark("Text message frame, 64 B (retained: awaiting offset + finish)") { benchmark in
        var offset: UInt64 = 1_000_000
        for _ in benchmark.scaledIterations {
            var frame = ServerFrame.begin(allocator: allocator, bodyCapacity: capacity)
            ServerMessageEncoder.messageAwaitingOffset(topic: topic, data: text, into: &frame)
            offset &+= 1
            ServerMessageEncoder.finishMessage(offset: offset, into: &frame)
            ServerFrame.finish(&frame, .text)
            blackHole(frame)
        }
    }

    Benchmark("Binary message frame, 64 B (retained: awaiting offset + finish)") { benchmark in
        var offset: UInt64 = 1_000_000
        for _ in benchmark.scaledIterations {
            var frame = ServerFrame.begin(allocator: allocator, bodyCapacity: capacity)
            let offsetIndex = BinaryCodec.encodeMessageAwaitingOffset(topic: topic, payload: binary, into: &frame)
            offset &+= 1
            frame.setInteger(offset, at: offsetIndex)
            ServerFrame.finish(&frame, .binary)
            blackHole(frame)
        }
    }

    // The encoder alone, into a buffer reused across operations: what the frame costs besides
    // its allocation.
    Benchmark("ServerMessageEncoder.message into a reused buffer, 64 B") { benchmark in
        var buffer = allocator.buffer(capacity: capacity)
        for _ in benchmark.scaledIterations {
            buffer.clear()
            ServerMessageEncoder.message(topic: topic, data: text, offset: 123_456_789, replay: false, into: &buffer)
        }
        blackHole(buffer)
    }
}
