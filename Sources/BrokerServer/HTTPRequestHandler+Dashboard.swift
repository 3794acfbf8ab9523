import NIOCore
import NIOHTTP1

/// The dashboard's static files, compiled into the binary (Package.swift `embedInCode`): the
/// files are public (they hold no data); every call they make for data needs the API key or an
/// admin token, which the page asks for.
enum DashboardAssets {
    struct Asset: Sendable {
        let bytes: ByteBuffer
        let contentType: String
    }

    static let files: [String: Asset] = [
        "index.html": Asset(bytes: ByteBuffer(bytes: PackageResources.index_html), contentType: "text/html; charset=utf-8"),
        "dashboard.js": Asset(bytes: ByteBuffer(bytes: PackageResources.dashboard_js), contentType: "text/javascript; charset=utf-8"),
        "dashboard.css": Asset(bytes: ByteBuffer(bytes: PackageResources.dashboard_css), contentType: "text/css; charset=utf-8"),
        "broker-client.js": Asset(
            bytes: ByteBuffer(bytes: PackageResources.broker_client_js), contentType: "text/javascript; charset=utf-8"),
    ]

    /// Only the page's own files, scripts and styles; WebSockets and fetches to this broker;
    /// never framed (clickjacking of the disconnect button). The page has no inline script or
    /// style, so nothing `unsafe-inline` is needed.
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; "
        + "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

    static func headers(for asset: Asset) -> HTTPHeaders {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: asset.contentType)
        // Revalidate every time: the files change with the binary, and they are small.
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "Content-Security-Policy", value: contentSecurityPolicy)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        headers.add(name: "X-Frame-Options", value: "DENY")
        // The WebSocket URL carries the token (`?token=`): never send it on as a referrer.
        headers.add(name: "Referrer-Policy", value: "no-referrer")
        return headers
    }
}

extension HTTPRequestHandler {
    func serveDashboard(_ file: String, _ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let asset = DashboardAssets.files[file] else {
            respondError(context, head, .notFound, "not_found", "no such dashboard file: \(file)")
            return
        }
        respond(context, head, .ok, bytes: asset.bytes, headers: DashboardAssets.headers(for: asset))
    }
}
