import BrokerProtocol
import BrokerTestSupport
import Foundation
import Testing

@testable import BrokerServer

/// The release number lives in BrokerVersion alone: what the executables print, what `welcome`
/// says, the build-info metric and the documentation's examples all agree with it.
@Suite struct VersionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func welcomeNamesTheRelease() {
        #expect(BrokerConfiguration().serverName == "swift-broker/\(BrokerVersion.number)")
    }

    @Test(.spawnsChildProcesses, arguments: ["broker", "broker-cli"])
    func executablesPrintTheRelease(executable: String) async throws {
        let process = try ChildProcess(executable, ["--version"])
        #expect(try await process.waitForExit(timeout: .seconds(30)) == 0)
        #expect(process.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == BrokerVersion.number)
    }

    @Test(arguments: ["docs/protocol.md", "docs/protocol-guide.md"])
    func documentedWelcomeNamesTheRelease(document: String) throws {
        let text = try String(contentsOf: Self.root.appendingPathComponent(document), encoding: .utf8)
        let named = text.components(separatedBy: #""server":"swift-broker/"#).dropFirst()
            .map { String($0.prefix { $0 != "\"" }) }
        #expect(!named.isEmpty)
        #expect(named.allSatisfy { $0 == BrokerVersion.number }, "\(document) names \(named)")
    }

    @Test func changelogHasAnEntryForTheRelease() throws {
        let changelog = try String(contentsOf: Self.root.appendingPathComponent("CHANGELOG.md"), encoding: .utf8)
        #expect(changelog.contains("\n## \(BrokerVersion.number)"))
    }
}
