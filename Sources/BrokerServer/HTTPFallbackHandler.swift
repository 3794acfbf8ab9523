import NIOCore
import NIOHTTP1

/// Answers the plain HTTP requests that are not WebSocket upgrades: `/healthz`, and a short
/// plain-text error for everything else (426 on the WebSocket path without an upgrade).
final class HTTPFallbackHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    static let name = "http-fallback"

    private let webSocketPaths: Set<String>
    private var request: HTTPRequestHead?

    init(webSocketPaths: Set<String>) {
        self.webSocketPaths = webSocketPaths
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
            let (status, body): (HTTPResponseStatus, String)
            switch path {
            case "/healthz":
                (status, body) = (.ok, "ok\n")
            case _ where webSocketPaths.contains(path):
                (status, body) = (.upgradeRequired, "this endpoint speaks WebSocket: send an upgrade request\n")
            default:
                (status, body) = (.notFound, "not found\n")
            }
            respond(context: context, head: head, status: status, body: body)
        }
    }

    private func respond(context: ChannelHandlerContext, head: HTTPRequestHead, status: HTTPResponseStatus, body: String) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        headers.add(name: "Content-Length", value: String(body.utf8.count))
        if status == .upgradeRequired { headers.add(name: "Upgrade", value: "websocket") }
        let keepAlive = head.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
