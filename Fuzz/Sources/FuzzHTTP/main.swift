import BrokerJournal
import BrokerProtocol
import FuzzSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1

@testable import BrokerServer

// The listener's pipeline as `BrokerServer` builds it (NIO's HTTP decoder and encoder, the
// WebSocket upgrader, `HTTPRequestHandler`; after an upgrade, the WebSocket connection) on an
// EmbeddedChannel, fed raw bytes as a client would send them: routing, query strings, headers,
// bodies, the HTTP API, upgrades with and without permessage-deflate, and whatever frames
// follow an upgrade.
//
// Input: one options byte (0x01: an API key is configured; 0x02: client tokens are required;
// 0x04: the echo endpoint is on; the high nibble: bytes per read, 0 for all at once), then the
// bytes of the connection. Afterwards the loop's clock moves past every timeout and the channel
// closes; nothing may crash on the way, and the handler must not answer after the close.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let options = input.byte()
    var configuration = BrokerConfiguration()
    configuration.maxMessageBytes = 4096
    configuration.maxFrameBytes = 4096
    configuration.maxBatchBytes = 8192
    configuration.maxBatchMessages = 16
    configuration.maxTopicBytes = 64
    if options & 0x01 != 0 { configuration.apiKey = "key" }
    if options & 0x02 != 0 { configuration.clientTokens = ["token"] }
    if options & 0x04 != 0 { configuration.echoPath = "/echo" }
    let readSize = Int(options >> 4)
    let settings = configuration

    let loop = EmbeddedEventLoop()
    let broker = Broker(
        configuration: configuration, journal: SynchronousJournal(), eventLoops: [loop],
        logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
    let hooks = ServerHooks(
        isListening: { true }, renderMetrics: { Array("broker_up 1\n".utf8) },
        admission: .open(settings))
    let channel = EmbeddedChannel(loop: loop)
    do {
        try BrokerServer.configurePipeline(channel, broker: broker, hooks: hooks)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
    } catch {
        fuzzCheck(false, "the pipeline cannot be set up: \(error)")
    }

    let bytes = input.rest()
    var offset = 0
    while offset < bytes.count, channel.isActive {
        let count = readSize == 0 ? bytes.count - offset : min(readSize, bytes.count - offset)
        let chunk = ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + count]))
        offset += count
        do {
            try channel.writeInbound(chunk)
        } catch {
            // A malformed request: NIO's decoder reports it and the error handler answers 400.
        }
        loop.run()
        drain(channel)
    }
    loop.advanceTime(by: .minutes(5))
    drain(channel)
    _ = try? channel.close().wait()
    loop.run()
    drain(channel)
    _ = try? channel.finish()
    try? loop.syncShutdownGracefully()
    return 0
}

/// Throws away what the server wrote (the fuzzer looks for crashes, not answers).
private func drain(_ channel: EmbeddedChannel) {
    while (try? channel.readOutbound(as: IOData.self)) != nil {}
    while (try? channel.readOutbound(as: ByteBuffer.self)) != nil {}
}
