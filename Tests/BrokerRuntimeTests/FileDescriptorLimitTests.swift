import BrokerRuntime
import Testing

/// `limits.max-connections 0`: the cap derived from the open-file limit leaves headroom for the
/// journal, the listener and plain HTTP (`/healthz`).
@Suite struct FileDescriptorLimitTests {
    @Test(
        "the derived connection cap",
        arguments: [(300, 221), (1_024, 909), (65_536, 62_196), (1_048_576, 996_084), (64, 1), (0, 0), (-1, 0)])
    func connectionCap(limit: Int, cap: Int) {
        #expect(FileDescriptorLimit.connectionCap(openFileLimit: limit) == cap)
    }
}
