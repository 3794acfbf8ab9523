@testable import BrokerProtocol
import FuzzSupport
import NIOCore
import NIOHTTP1

@testable import BrokerServer

// `Sec-WebSocket-Extensions`: `ExtensionHeader.parse` and the permessage-deflate negotiation, as
// the upgrade sees them (each input line one header line, read through `HTTPHeaders`).
//
// Invariants: an agreement stays within RFC 7692's window sizes; the broker's answer parses as
// exactly one well-formed permessage-deflate element, and offered back it yields the same
// agreement (the answer says what was agreed, nothing more).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzExtensions(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    let input = FuzzInput(data, size)
    let text = String(decoding: input.bytes, as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)

    let elements = ExtensionHeader.parse(lines)
    for case let element? in elements {
        fuzzCheck(ExtensionHeader.isToken(ArraySlice(element.name.utf8)), "element name \(element.name) is not a token")
        for parameter in element.parameters {
            fuzzCheck(ExtensionHeader.isToken(ArraySlice(parameter.name.utf8)), "parameter name is not a token")
            if let value = parameter.value {
                fuzzCheck(ExtensionHeader.isToken(ArraySlice(value.utf8)), "parameter value \(value) is not a token")
            }
        }
    }

    var headers = HTTPHeaders()
    for line in lines { headers.add(name: "Sec-WebSocket-Extensions", value: line) }
    let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/ws", headers: headers)
    let agreement = BrokerServer.deflateAgreement(head, configuration: BrokerConfiguration())
    fuzzCheck(agreement == PerMessageDeflate.negotiate(headerLines: lines), "the upgrade and the negotiator disagree")

    if let agreement {
        fuzzCheck((9...15).contains(agreement.serverMaxWindowBits), "server window \(agreement.serverMaxWindowBits)")
        fuzzCheck((8...15).contains(agreement.clientMaxWindowBits), "client window \(agreement.clientMaxWindowBits)")
        let answer = agreement.responseHeader
        let parsed = ExtensionHeader.parse([answer])
        fuzzCheck(parsed.count == 1 && parsed[0]?.name == PerMessageDeflate.extensionName, "the answer \(answer) does not parse")
        fuzzCheck(PerMessageDeflate.negotiate(headerLines: [answer]) == agreement, "the answer \(answer) means another agreement")
        fuzzCheck(MessageInflater(windowBits: agreement.clientMaxWindowBits) != nil, "no inflater for the agreed window")
    }
    return 0
}
