import BrokerClient
import BrokerHTTPClient
import Foundation
import NIOCore
import Testing

@testable import broker_cli

/// broker-cli's pure parts: the `--format` template, where connection settings come from, the
/// HTTP API's URL and the `GET /api/retained` answer.
@Suite struct CLIUnitTests {
    static let text = BrokerMessage(topic: "a/b", payload: ByteBuffer(string: #""x\"y""#), isBinary: false, offset: 7, replay: true)
    static let object = BrokerMessage(topic: "a/c", payload: ByteBuffer(string: #"{"n":1}"#), isBinary: false)
    static let binary = BrokerMessage(topic: "cam", payload: ByteBuffer(bytes: [104, 105, 0xFF]), isBinary: true, offset: 9)

    static func render(_ template: String, _ message: BrokerMessage, epoch: String? = "e1") throws -> String {
        String(decoding: try FormatTemplate(parsing: template).render(message, epoch: epoch), as: UTF8.self)
    }

    @Test func templateFields() throws {
        #expect(try Self.render("{topic} {data} {offset} {epoch}", Self.text) == #"a/b "x\"y" 7 e1"#)
        #expect(try Self.render("{text}|{replay}|{binary}|{bytes}", Self.text) == #"x"y|true|false|6"#)
        #expect(try Self.render("{topic} {data} [{offset}] {replay}", Self.object) == #"a/c {"n":1} [] false"#)
        #expect(try Self.render("{data} {binary} {bytes}", Self.binary) == "aGn/ true 3")
        #expect(try Self.render("{json}", Self.object) == Self.object.jsonLine)
        #expect(try Self.render("{epoch}.", Self.object, epoch: nil) == ".")
    }

    @Test func templateEscapesAndBraces() throws {
        #expect(try Self.render(#"{{{topic}}}\t{offset}\n\\"#, Self.text) == "{a/b}\t7\n\\")
        #expect(try Self.render("plain", Self.text) == "plain")
        #expect(try Self.render("", Self.text) == "")
        #expect(try FormatTemplate(parsing: "x{topic}y").parts == [.literal("x"), .field(.topic), .literal("y")])
    }

    @Test(arguments: ["{nope}", "{topic", "a}b", "{}", "{Topic}"])
    func templateRefuses(_ template: String) {
        #expect(throws: FormatTemplate.ParseError.self) { try FormatTemplate(parsing: template) }
    }

    @Test func rawOutputIsThePayload() {
        #expect(OutputFormat.raw.render(Self.text, epoch: nil) == Array("x\"y\n".utf8))
        #expect(OutputFormat.raw.render(Self.object, epoch: nil) == Array("{\"n\":1}\n".utf8))
        #expect(OutputFormat.raw.render(Self.binary, epoch: nil) == [104, 105, 0xFF, 10])
        #expect(OutputFormat.jsonLine.render(Self.object, epoch: nil) == Array(#"{"topic":"a/c","data":{"n":1}}"#.utf8) + [10])
    }

    // MARK: contexts

    static func temporaryStore() throws -> ContextStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("broker-cli-contexts-\(UUID().uuidString)")
        return ContextStore(directory: directory)
    }

    @Test func storeFollowsXDGConfigHome() {
        #expect(ContextStore(environment: ["XDG_CONFIG_HOME": "/x/cfg", "HOME": "/home/u"]).directory.path == "/x/cfg/broker-cli")
        #expect(ContextStore(environment: ["HOME": "/home/u"]).directory.path == "/home/u/.config/broker-cli")
        // A relative XDG_CONFIG_HOME is invalid by the spec and ignored.
        #expect(ContextStore(environment: ["XDG_CONFIG_HOME": "cfg", "HOME": "/home/u"]).directory.path == "/home/u/.config/broker-cli")
    }

    @Test func flagsOverrideEnvironmentOverrideContext() throws {
        let store = try Self.temporaryStore()
        defer { try? FileManager.default.removeItem(at: store.directory) }
        try store.save(CLIContext(url: "wss://ctx/ws", token: "ctx-token", caFile: "/ctx/ca.pem", insecure: true, apiKey: "ctx-key"), as: "prod")
        try store.save(CLIContext(url: "ws://other/ws"), as: "other")

        // The context alone.
        let fromContext = try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: "prod", environment: [:], store: store)
        #expect(fromContext == ConnectionSettings(
            url: "wss://ctx/ws", token: "ctx-token", caFile: "/ctx/ca.pem", insecure: true, apiKey: "ctx-key", contextName: "prod"))

        // The environment over the context; empty variables count as unset.
        let environment = ["BROKER_URL": "ws://env/ws", "BROKER_TOKEN": "", "BROKER_API_KEY": "env-key"]
        let fromEnvironment = try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: "prod", environment: environment, store: store)
        #expect(fromEnvironment.url == "ws://env/ws")
        #expect(fromEnvironment.token == "ctx-token")
        #expect(fromEnvironment.apiKey == "env-key")

        // Flags over both.
        let fromFlags = try ConnectionSettings.resolve(
            flags: CLIContext(url: "ws://flag/ws", token: "flag-token"), contextFlag: "prod", environment: environment, store: store)
        #expect(fromFlags.url == "ws://flag/ws")
        #expect(fromFlags.token == "flag-token")
        #expect(fromFlags.caFile == "/ctx/ca.pem")

        // Nothing anywhere: the defaults.
        let none = try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: nil, environment: [:], store: store)
        #expect(none == ConnectionSettings(url: ConnectionSettings.defaultURL, insecure: false))
    }

    @Test func whichContextApplies() throws {
        let store = try Self.temporaryStore()
        defer { try? FileManager.default.removeItem(at: store.directory) }
        try store.save(CLIContext(url: "ws://a/ws"), as: "a")
        try store.save(CLIContext(url: "ws://b/ws"), as: "b")
        try store.save(CLIContext(url: "ws://c/ws"), as: "c")
        #expect(ConnectionSettings.contextName(flag: nil, environment: [:], store: store) == nil)
        try store.select("a")
        #expect(store.selected == "a")
        #expect(ConnectionSettings.contextName(flag: nil, environment: [:], store: store) == "a")
        #expect(ConnectionSettings.contextName(flag: nil, environment: ["BROKER_CONTEXT": "b"], store: store) == "b")
        #expect(ConnectionSettings.contextName(flag: "c", environment: ["BROKER_CONTEXT": "b"], store: store) == "c")
        let resolved = try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: nil, environment: ["BROKER_CONTEXT": "b"], store: store)
        #expect(resolved.url == "ws://b/ws")
        #expect(store.names == ["a", "b", "c"])

        // Removing the selected one clears the selection.
        try store.remove("a")
        #expect(store.selected == nil)
        #expect(store.names == ["b", "c"])
    }

    @Test func missingOrBadContextsAreErrors() throws {
        let store = try Self.temporaryStore()
        defer { try? FileManager.default.removeItem(at: store.directory) }
        #expect(throws: ContextStore.Failure.self) {
            try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: "nope", environment: [:], store: store)
        }
        #expect(throws: ContextStore.Failure.self) {
            try ConnectionSettings.resolve(flags: CLIContext(), contextFlag: nil, environment: ["BROKER_CONTEXT": "nope"], store: store)
        }
        for name in ["", "../x", ".hidden", "a/b", "a b"] {
            #expect(throws: ContextStore.Failure.self, "\(name)") { try store.save(CLIContext(), as: name) }
        }
        #expect(throws: (any Error).self) { try store.select("nope") }
    }

    @Test func contextFileIsPrivate() throws {
        let store = try Self.temporaryStore()
        defer { try? FileManager.default.removeItem(at: store.directory) }
        try store.save(CLIContext(token: "secret"), as: "p")
        let attributes = try FileManager.default.attributesOfItem(atPath: store.file(of: "p").path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try store.load("p") == CLIContext(token: "secret"))
    }

    // MARK: the HTTP API

    @Test(arguments: [
        ("ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080"),
        ("wss://h:8443/ws?token=x", "https://h:8443"),
        ("wss://h/broker/ws", "https://h/broker"),
        ("ws://h:1/ws/", "http://h:1"),
        ("ws://h:1/", "http://h:1"),
        ("ws://h:1/wsx", "http://h:1/wsx"),
        ("ws://[::1]:8080/ws", "http://[::1]:8080"),
    ])
    func httpBaseURLFromTheWebSocketURL(_ url: String, _ expected: String) {
        #expect(ConnectionSettings(url: url, insecure: false).httpBaseURL == expected)
    }

    @Test func apiURLOverridesTheDerivedOne() {
        #expect(ConnectionSettings(url: "ws://h/ws", insecure: false, apiURL: "http://admin:9090/").httpBaseURL == "http://admin:9090")
    }

    @Test func splitsHTTPURLs() throws {
        #expect(try APIRequest.split("http://h:81/api/stats?x=1")
            == .init(isTLS: false, host: "h", port: 81, hostHeader: "h:81", target: "/api/stats?x=1"))
        #expect(try APIRequest.split("https://h") == .init(isTLS: true, host: "h", port: 443, hostHeader: "h", target: "/"))
        #expect(try APIRequest.split("http://[::1]:9/a").host == "::1")
        #expect(throws: APIRequest.Failure.self) { try APIRequest.split("ftp://h/") }
        #expect(throws: APIRequest.Failure.self) { try APIRequest.split("http://h:x/") }
    }

    @Test func percentEncodesFilters() {
        #expect(Retained.List.percentEncoded("a/+/#") == "a/%2B/%23")
        #expect(Retained.List.percentEncoded("é &") == "%C3%A9%20%26")
    }

    @Test func readsARetainedPage() throws {
        let json = #"""
            {"epoch":"52d2","messages":[
              {"topic":"orders/2","offset":1,"timestamp":1795671221063,"data":{"state": "shipped"}},
              {"topic":"cams/1","offset":2,"timestamp":1795671221070,"binary":"aGk="},
              {"topic":"s","offset":3,"data":"x"}
            ],"next":3}
            """#
        let page = try RetainedPage(json: Array(json.utf8))
        #expect(page.epoch == "52d2")
        #expect(page.next == 3)
        #expect(page.messages.map(\.jsonLine) == [
            #"{"topic":"orders/2","data":{"state": "shipped"},"offset":1}"#,
            #"{"topic":"cams/1","binary":"aGk=","offset":2}"#,
            #"{"topic":"s","data":"x","offset":3}"#,
        ])
        let last = try RetainedPage(json: Array(#"{"epoch":"e","messages":[],"next":null}"#.utf8))
        #expect(last.messages.isEmpty && last.next == nil)
        #expect(throws: (any Error).self) { try RetainedPage(json: Array(#"{"messages":[{"offset":1}]}"#.utf8)) }
        #expect(throws: (any Error).self) { try RetainedPage(json: Array("not json".utf8)) }
    }
}
