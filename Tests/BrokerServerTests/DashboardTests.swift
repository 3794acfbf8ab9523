import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import BrokerServer

/// `/dashboard`: the files compiled into the binary, their headers, and that the page loads
/// nothing from elsewhere.
@Suite struct DashboardTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let clientLibrary = repositoryRoot.appendingPathComponent("Clients/js/broker-client.js")

    @Test func servesItsFilesWithTheirTypesAndAStrictPolicy() async throws {
        // The files are open even on a broker with an API key: they hold no data.
        let harness = try await AdminHarness { $0.apiKey = "k" }
        let expected = [
            ("/dashboard", "text/html; charset=utf-8"), ("/dashboard/", "text/html; charset=utf-8"),
            ("/dashboard/dashboard.js", "text/javascript; charset=utf-8"),
            ("/dashboard/broker-client.js", "text/javascript; charset=utf-8"),
            ("/dashboard/dashboard.css", "text/css; charset=utf-8"),
        ]
        for (path, type) in expected {
            let response = try #require(try harness.http().request(.GET, path))
            #expect(response.status == .ok && response.headers["Content-Type"] == [type], "\(path)")
            #expect(!response.body.isEmpty, "\(path)")
            let policy = try #require(response.headers["Content-Security-Policy"].first)
            #expect(policy.hasPrefix("default-src 'self'") && policy.contains("connect-src 'self' ws: wss:"))
            #expect(!policy.contains("unsafe-inline") && policy.contains("frame-ancestors 'none'"))
            #expect(response.headers["X-Content-Type-Options"] == ["nosniff"])
            #expect(response.headers["Cache-Control"] == ["no-cache"])
        }
        let head = try #require(try harness.http().request(.HEAD, "/dashboard"))
        #expect(head.status == .ok && head.body.isEmpty && head.headers["Content-Length"] != ["0"])
        let missing = try #require(try harness.http().request(.GET, "/dashboard/secrets.txt"))
        #expect(missing.status == .notFound && missing.body.contains(#""code":"not_found""#))
        #expect(try harness.http().request(.POST, "/dashboard")?.status == .methodNotAllowed)
    }

    /// The policy allows nothing else, so the page must need nothing else: no inline script or
    /// style, no asset from another origin.
    @Test func thePageLoadsNothingFromElsewhere() throws {
        let page = String(decoding: PackageResources.index_html, as: UTF8.self)
        #expect(!page.contains("http://") && !page.contains("https://"))
        #expect(!page.contains("<style") && !page.contains("style="))
        #expect(page.range(of: #"\son[a-z]+\s*="#, options: .regularExpression) == nil)  // no inline handlers
        for script in page.components(separatedBy: "<script").dropFirst() {
            #expect(script.hasPrefix(#" type="module" src="/dashboard/"#) && script.contains("></script>"))
        }
        let code = String(decoding: PackageResources.dashboard_js, as: UTF8.self)
        let imports = code.split(separator: "\n").filter { $0.hasPrefix("import ") }
        #expect(imports == ["import { BrokerClient } from '/dashboard/broker-client.js';"])
        #expect(!code.contains("innerHTML"))
    }

    /// Two copies on purpose: the binary embeds the file from inside its target (SwiftPM resources
    /// and the Docker build context hold only Sources/), and users take the library from
    /// Clients/js as a plain file. This keeps them the same.
    @Test func theEmbeddedClientIsTheClientLibrary() throws {
        let library = try Data(contentsOf: Self.clientLibrary)
        #expect(
            Array(library) == PackageResources.broker_client_js,
            "Sources/BrokerServer/Dashboard/broker-client.js differs from Clients/js/broker-client.js: copy it over")
    }
}
