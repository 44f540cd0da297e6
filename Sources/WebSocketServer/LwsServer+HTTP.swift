import CLwsShim
import Foundation
import Logging
import ServiceLoop
import Synchronization

/// HTTP exchanges: routing, bounded request bodies, responses.
extension LwsServer {

    func httpCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
                                  _ user: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
        let sessionID = user?.assumingMemoryBound(to: UInt64.self)
        switch reason {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            // lws reports one wake-up to every protocol: this one drains the inbox.
            loop.drain()
        case LWS_CALLBACK_HTTP:
            guard let wsi, let sessionID else { return -1 }
            // A kept-alive connection's previous exchange is over: drop it before the next one.
            if sessionID.pointee != 0 { discard(sessionID.pointee) }
            let id = makeID()
            sessionID.pointee = id
            let exchange = HTTPExchange(id: id, wsi: wsi, head: requestHead(wsi, uri: data, len: len))
            exchanges[id] = exchange
            return startExchange(exchange)
        case LWS_CALLBACK_HTTP_BODY:
            guard let id = sessionID?.pointee, let exchange = exchanges[id], let data else { return 0 }
            exchange.appendBody(UnsafeRawBufferPointer(start: data, count: len))
        case LWS_CALLBACK_HTTP_BODY_COMPLETION:
            guard let id = sessionID?.pointee, let exchange = exchanges[id] else { return 0 }
            finishBody(exchange)
        case LWS_CALLBACK_HTTP_WRITEABLE:
            guard let id = sessionID?.pointee, let exchange = exchanges[id] else { return 0 }
            return exchange.writeNext(metrics: metrics, closeAfter: { [weak self] in self?.discard(id) })
        case LWS_CALLBACK_CLOSED_HTTP:
            if let id = sessionID?.pointee { discard(id) }
        default:
            break
        }
        return 0
    }

    private func requestHead(_ wsi: OpaquePointer, uri: UnsafeMutableRawPointer?, len: Int) -> HTTPRequestHead {
        let method = HTTPMethod.from(chat_lws_http_method(wsi))
        let raw = uri.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: len), as: UTF8.self) } ?? "/"
        var query: String?
        if let q = Self.header(wsi, WSI_TOKEN_HTTP_URI_ARGS) { query = q }
        return HTTPRequestHead(method: method, path: raw.isEmpty ? "/" : raw, query: query) { name in
            Self.header(wsi, named: name)
        }
    }

    private func startExchange(_ exchange: HTTPExchange) -> Int32 {
        guard let http else { return -1 }
        if exchange.head.path.utf8.count + (exchange.head.query?.utf8.count ?? 0) > options.maxTargetBytes {
            exchange.respond(.error(414, "request target longer than \(options.maxTargetBytes) bytes", close: true))
            return 0
        }
        switch http.route(exchange.head) {
        case .respond(let response):
            exchange.respond(response)
        case .readBody(let limit, let keep, let handler):
            let wsi = exchange.wsi
            if Self.header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) != nil {
                exchange.respond(.error(411, "a Content-Length is required (chunked bodies are not accepted)", close: true))
                return 0
            }
            guard let lengthText = Self.header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) else {
                exchange.respond(.error(411, "a Content-Length is required", close: true))
                return 0
            }
            // Digits only: a signed or garbled length must not shrink the in-flight count below.
            guard lengthText.utf8.count <= 18, lengthText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let length = Int(lengthText) else {
                exchange.respond(.error(400, "Content-Length is not a byte count", close: true))
                return 0
            }
            if length > limit {
                exchange.respond(.error(413, "body larger than \(limit) bytes", close: true))
                return 0
            }
            if length > options.maxBodyBytesInFlight - bodyBytesInFlight {
                makeRoom(for: length)
            }
            if length > options.maxBodyBytesInFlight - bodyBytesInFlight {
                // Svix retries a 503; Retry-After says when the bodies in flight will have drained.
                var busy = HTTPResponse.error(503, "too many request bodies in flight, retry later", close: true)
                busy.headers.append(("retry-after", "\(options.bodyTimeoutSeconds)"))
                exchange.respond(busy)
                return 0
            }
            var kept: [String: String] = [:]
            for name in keep { if let v = Self.header(wsi, named: name) { kept[name.lowercased()] = v } }
            exchange.reservedBodyBytes = length
            bodyBytesInFlight += length
            exchange.bodyDeadline = DispatchTime.now().uptimeNanoseconds + UInt64(options.bodyTimeoutSeconds) * 1_000_000_000
            exchange.expectBody(headers: kept, handler: handler)
        }
        return 0
    }

    /// Ends an exchange: its reserved body bytes are free again.
    private func discard(_ id: UInt64) {
        guard let exchange = exchanges.removeValue(forKey: id) else { return }
        releaseBody(exchange)
    }

    private func releaseBody(_ exchange: HTTPExchange) {
        bodyBytesInFlight -= exchange.reservedBodyBytes
        exchange.reservedBodyBytes = 0
    }

    /// Bodies that trickle give way to new ones: those read for a second or more that brought less
    /// than `slowBodyBytesPerSecond` in the last second are answered 408, slowest first, until
    /// `length` fits. A delivery from Svix arrives at network speed; an attacker holding the cap
    /// with slow bodies then cannot keep it from honest deliveries.
    private func makeRoom(for length: Int) {
        let now = DispatchTime.now().uptimeNanoseconds
        var slow: [(rate: Int, exchange: HTTPExchange)] = []
        for exchange in exchanges.values {
            guard case .readingBody = exchange.state, now - exchange.bodyStarted >= 1_000_000_000 else { continue }
            let rate = exchange.bodyRate(now: now)
            if rate < Self.slowBodyBytesPerSecond { slow.append((rate, exchange)) }
        }
        guard slow.reduce(0, { $0 + $1.exchange.reservedBodyBytes }) >= length - (options.maxBodyBytesInFlight - bodyBytesInFlight) else { return }
        for (_, exchange) in slow.sorted(by: { $0.rate < $1.rate }) where length > options.maxBodyBytesInFlight - bodyBytesInFlight {
            releaseBody(exchange)
            exchange.bodyDeadline = now + 3_000_000_000
            exchange.respond(.error(408, "request body too slow", close: true))
        }
    }

    static let slowBodyBytesPerSecond = 16 * 1024

    /// Bodies past their deadline get 408 and close; a connection that does not take even that
    /// within a few seconds is closed without it.
    func sweepBodies() {
        let now = DispatchTime.now().uptimeNanoseconds
        for (id, exchange) in exchanges {
            if case .readingBody = exchange.state, let deadline = exchange.bodyDeadline, now >= deadline {
                releaseBody(exchange)
                exchange.bodyDeadline = now + 3_000_000_000
                exchange.respond(.error(408, "request body not complete within \(options.bodyTimeoutSeconds) s", close: true))
            } else if case .responding = exchange.state, let deadline = exchange.bodyDeadline, now >= deadline {
                chat_lws_kill(exchange.wsi)
                discard(id)
            }
        }
    }

    private func finishBody(_ exchange: HTTPExchange) {
        guard case .readingBody(let headers, let handler) = exchange.state else { return }
        releaseBody(exchange)
        exchange.bodyDeadline = nil
        exchange.state = .handling
        let request = HTTPRequest(method: exchange.head.method, path: exchange.head.path, headers: headers, body: exchange.body)
        handler(request, HTTPResponder(server: self, exchangeID: exchange.id))
    }

    func respond(_ id: UInt64, _ response: HTTPResponse) {
        loop.preconditionInLoop()
        // The client may have gone while a worker was busy: then there is nobody to answer.
        exchanges[id]?.respond(response)
    }

    static func header(_ wsi: OpaquePointer, _ token: lws_token_indexes) -> String? {
        let length = Int(chat_lws_header_length(wsi, token))
        guard length > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: length + 1)
        guard chat_lws_header(wsi, token, &buffer, Int32(buffer.count)) >= 0 else { return nil }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    static func header(_ wsi: OpaquePointer, named name: String) -> String? {
        switch name {
        case "authorization": return header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION)
        case "origin": return header(wsi, WSI_TOKEN_ORIGIN)
        case "content-type": return header(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE)
        case "content-length": return header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH)
        case "sec-websocket-protocol": return header(wsi, WSI_TOKEN_PROTOCOL)
        case "host": return header(wsi, WSI_TOKEN_HOST)
        // Headers lws parses into tokens are not readable as custom headers.
        case "if-none-match": return header(wsi, WSI_TOKEN_HTTP_IF_NONE_MATCH)
        default:
            var buffer = [CChar](repeating: 0, count: 1024)
            let n = chat_lws_custom_header(wsi, name + ":", &buffer, Int32(buffer.count))
            return n >= 0 ? buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } : nil
        }
    }
}

extension HTTPMethod {
    static func from(_ raw: Int32) -> HTTPMethod {
        switch UInt32(raw) {
        case CHAT_HTTP_GET.rawValue: return .get
        case CHAT_HTTP_POST.rawValue: return .post
        case CHAT_HTTP_PUT.rawValue: return .put
        case CHAT_HTTP_DELETE.rawValue: return .delete
        case CHAT_HTTP_PATCH.rawValue: return .patch
        case CHAT_HTTP_OPTIONS.rawValue: return .options
        case CHAT_HTTP_HEAD.rawValue: return .head
        default: return .other
        }
    }
}

extension HTTPResponse {
    /// A JSON error body: `{"error": "..."}`.
    public static func error(_ status: Int, _ message: String, close: Bool = false) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(JSONText.object(["error": message]).utf8), closeConnection: close)
    }
}
