import Foundation
import Logging
import Testing

@testable import BrokerRuntime

/// `log.format: json`: one JSON object per line.
@Suite struct JSONLogHandlerTests {
    @Test func jsonLogLines() throws {
        let line = JSONLogHandler.format(
            level: .notice, message: "retained \"messages\" cleared", metadata: ["filter": "a/#", "count": "3"], label: "broker",
            date: Date(timeIntervalSince1970: 1_700_000_000.25))
        #expect(line == #"{"ts":"2023-11-14T22:13:20.250Z","level":"notice","label":"broker","msg":"retained \"messages\" cleared","count":"3","filter":"a/#"}"# + "\n")
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String]
        #expect(object?["filter"] == "a/#")
    }
}
