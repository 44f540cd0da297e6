import CLwsShim
import Dispatch

/// One HTTP request/response on the service thread: its lifecycle is the `state` enum.
final class HTTPExchange {
    enum State {
        case routing
        case readingBody(headers: [String: String], handler: (HTTPRequest, HTTPResponder) -> Void)
        case refusingBody          // answered early; remaining body bytes are dropped unread
        case handling
        case responding(HTTPResponse, headersWritten: Bool)
        case done
    }

    let id: UInt64
    let wsi: OpaquePointer
    let head: HTTPRequestHead
    var state: State = .routing
    var body: [UInt8] = []
    /// Declared body bytes counted against the server's in-flight cap until the body is complete.
    var reservedBodyBytes = 0
    /// While reading: when the body must be complete. After an early answer: when to stop waiting
    /// for the client to take it.
    var bodyDeadline: UInt64?
    /// Body progress in one-second windows, to tell a trickle from a delivery (`bodyRate`).
    private(set) var bodyStarted: UInt64 = 0
    private var windowStart: UInt64 = 0
    private var windowBytes = 0
    private var lastWindowBytes = 0

    init(id: UInt64, wsi: OpaquePointer, head: HTTPRequestHead) {
        self.id = id
        self.wsi = wsi
        self.head = head
    }

    /// The body's Content-Length was checked against the route's limit and reserved (`reservedBodyBytes`).
    func expectBody(headers: [String: String], handler: @escaping (HTTPRequest, HTTPResponder) -> Void) {
        bodyStarted = DispatchTime.now().uptimeNanoseconds
        windowStart = bodyStarted
        state = .readingBody(headers: headers, handler: handler)
    }

    func appendBody(_ chunk: UnsafeRawBufferPointer) {
        guard case .readingBody = state else { return }
        // The one check while reading: never more than the declared length (which the limit bounded).
        if body.count + chunk.count > reservedBodyBytes {
            body.removeAll()
            respond(.error(400, "body longer than its Content-Length", close: true))
            return
        }
        body.append(contentsOf: chunk)
        let now = DispatchTime.now().uptimeNanoseconds
        if now - windowStart >= 1_000_000_000 {
            lastWindowBytes = now - windowStart >= 2_000_000_000 ? 0 : windowBytes
            windowStart = now
            windowBytes = 0
        }
        windowBytes += chunk.count
    }

    /// Body bytes received in the last full second (0 when nothing came in it).
    func bodyRate(now: UInt64) -> Int {
        let age = now - windowStart
        if age >= 2_000_000_000 { return 0 }
        return age >= 1_000_000_000 ? windowBytes : lastWindowBytes
    }

    func respond(_ response: HTTPResponse) {
        switch state {
        case .responding, .done: return
        default: break
        }
        state = .responding(response, headersWritten: false)
        lws_callback_on_writable(wsi)
    }

    /// Headers in one writable callback, the body in the next (one lws_write per callback).
    func writeNext(metrics: TransportMetrics, closeAfter: () -> Void) -> Int32 {
        guard case .responding(let response, let headersWritten) = state else { return 0 }
        if !headersWritten {
            var extra = response.headers
            if response.closeConnection { extra.append(("connection:", "close")) }
            let names = extra.map { strdup($0.0.hasSuffix(":") ? $0.0 : $0.0 + ":") }
            let values = extra.map { strdup($0.1) }
            defer { names.forEach { free($0) }; values.forEach { free($0) } }
            var namePointers = names.map { UnsafePointer<CChar>($0) }
            var valuePointers = values.map { UnsafePointer<CChar>($0) }
            let failed = response.contentType.withCString { type in
                chat_lws_write_http_headers(wsi, UInt32(response.status), type, Int64(response.body.count),
                                            &namePointers, &valuePointers, Int32(extra.count))
            }
            metrics.httpRequest(route: routeLabel, status: response.status)
            if failed != 0 { return -1 }
            state = .responding(response, headersWritten: true)
            if !response.body.isEmpty && !response.headersOnly {
                lws_callback_on_writable(wsi)
                return 0
            }
        } else {
            let frame = OutboundFrame(response.body)
            if chat_lws_write_http_body(wsi, frame.payload, frame.count, 1) < frame.count { return -1 }
        }
        state = .done
        if response.closeConnection { closeAfter(); return -1 }
        return lws_http_transaction_completed(wsi) != 0 ? -1 : 0
    }

    /// A bounded label for metrics: known routes by name, everything else as "other".
    var routeLabel: String {
        switch head.path {
        case "/healthz", "/readyz", "/metrics", "/api/webhooks/clerk", "/ws", "/", "/dev/token": return head.path
        default: return "other"
        }
    }
}
