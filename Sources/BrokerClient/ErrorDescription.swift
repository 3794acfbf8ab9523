#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import NIOWebSocket
import WSClient

extension BrokerClient {
    /// A short, lower-case description of why a connection failed, e.g. "connection refused".
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return describe(first.error) }
            if error.dnsAError != nil || error.dnsAAAAError != nil { return "cannot resolve host \(error.host)" }
            return "cannot connect to \(error.host):\(error.port)"
        case let error as IOError:
            return String(cString: strerror(error.errnoCode)).lowercased()
        case let error as ChannelError:
            switch error {
            case .connectTimeout: return "connect timed out"
            case .ioOnClosedChannel, .alreadyClosed, .eof: return "connection closed"
            default: return "\(error)"
            }
        case let error as WebSocketClientError:
            if error == .webSocketUpgradeFailed { return "WebSocket upgrade refused (wrong path, or authentication required?)" }
            return error.description
        case let error as BrokerClientError:
            return error.description
        default:
            return "\(error)"
        }
    }

    /// Describes the broker's close frame, e.g. "closed by the broker (1008 slow consumer)".
    static func describe(_ frame: WebSocketCloseFrame) -> String {
        let code = UInt16(webSocketErrorCode: frame.closeCode)
        if let reason = frame.reason, !reason.isEmpty { return "closed by the broker (\(code) \(reason))" }
        return "closed by the broker (\(code))"
    }
}
