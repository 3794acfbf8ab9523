import BrokerTestSupport

extension TestBroker {
    /// A raw client that has already read its welcome; `extraHeaders` to offer extensions.
    func client(extraHeaders: [String] = []) async throws -> RawWebSocketClient {
        let client = try await RawWebSocketClient.connect(port: port, extraHeaders: extraHeaders)
        guard case .welcome = try await client.nextMessage() else { throw RawWebSocketClient.ClientError.handshake("no welcome") }
        return client
    }
}
