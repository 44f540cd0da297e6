import CLwsShim
import Foundation
import Logging
import ServiceLoop
import Synchronization

/// Routes HTTP requests (service thread only).
public protocol HTTPService: AnyObject {
    func route(_ head: HTTPRequestHead) -> HTTPAction
}

/// Receives the WebSocket events (service thread only).
public protocol WebSocketService: AnyObject {
    /// Decides whether an upgrade may proceed; nil accepts, a string names the refusal for the log.
    func refusal(forUpgrade request: UpgradeRequest) -> String?
    func opened(_ connection: any ClientConnection)
    /// A whole message; lws has checked a text message's UTF-8, not a binary one's.
    func received(_ connection: any ClientConnection, message: [UInt8], binary: Bool)
    func closed(_ connection: any ClientConnection)
    /// Called every `tickMicroseconds` (default 200 ms) for timeouts and housekeeping.
    func tick()
}

/// What the channel holds of one client's socket: a WebSocket here, an in-memory connection in
/// in-process tests (ChatTesting). Service thread only.
public protocol ClientConnection: AnyObject {
    var id: UInt64 { get }
    var request: UpgradeRequest { get }
    /// Queues a frame; false when closing or over the outbound cap (the connection is then closed).
    @discardableResult func send(_ frame: OutboundFrame) -> Bool
    /// Sends what is queued, then closes with `code`.
    func close(_ code: CloseCode, reason: String)
}

/// Counters the adapter reports (open sockets, slow consumers) without depending on a metrics library.
public protocol TransportMetrics: AnyObject {
    func connectionOpened()
    func connectionClosed()
    func slowConsumerClosed()
    func httpRequest(route: String, status: Int)
}

/// The libwebsockets service thread: owns every socket and all per-connection state. Other threads
/// reach it only through `post(_:)`, which queues a closure and wakes the loop with `lws_cancel_service`.
public final class LwsServer {
    public struct Options {
        public var host: String?
        public var port: Int
        public var tlsCertificatePath: String?
        public var tlsKeyPath: String?
        public var webSocketProtocol: String = "chat.v1"
        public var webSocketPath: String = "/ws"
        public var pingIntervalSeconds: Int = 10
        public var hangupSeconds: Int = 20
        public var maxInboundMessageBytes: Int = 64 * 1024
        public var maxOutboundBytes: Int = 1 << 20
        /// The close code for a connection whose outbound queue overflowed.
        public var slowConsumerCloseCode = CloseCode.policyViolation
        /// How often `WebSocketService.tick()` runs.
        public var tickMicroseconds: Int64 = 200_000
        /// A request body must be complete this long after its headers (lws' own timeout restarts on
        /// every byte, so a trickle would never end): then 408 and the connection closes.
        public var bodyTimeoutSeconds: Int = 10
        /// Declared body bytes admitted at once across all requests; more: 503 + Retry-After, decided
        /// from the headers before anything is read.
        public var maxBodyBytesInFlight: Int = 16 << 20
        /// Request line plus headers of one request (fits a 16 KiB bearer token on the upgrade).
        public var maxHeaderBytes: Int = 24 * 1024
        /// Longest request target (path and query) routed; longer: 414.
        public var maxTargetBytes: Int = 4096

        public init(host: String?, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public let options: Options
    public private(set) var port: Int = 0
    let logger: Logger
    let metrics: TransportMetrics
    /// Reused by every connection's coalesced writes (service thread only).
    var coalesceBuffer: [UInt8] = []
    weak var http: HTTPService?
    weak var webSocket: WebSocketService?

    private var handle: OpaquePointer?
    private var context: OpaquePointer?
    /// The service thread: `run()` serves on it, and every entry below checks it.
    public let loop: ServiceLoop
    private var nextID: UInt64 = 0
    private var exchanges: [UInt64: HTTPExchange] = [:]
    /// Declared body bytes of the requests being read now (bounded by `maxBodyBytesInFlight`).
    public private(set) var bodyBytesInFlight = 0
    public private(set) var connections: [UInt64: WebSocketConnection] = [:]

    /// Made on the service thread (`loop.enter()` first): the listener, the routes and the channel.
    public init(options: Options, loop: ServiceLoop, http: HTTPService, webSocket: WebSocketService,
                metrics: TransportMetrics, logger: Logger) throws {
        loop.preconditionInLoop()
        self.loop = loop
        self.options = options
        self.http = http
        self.webSocket = webSocket
        self.metrics = metrics
        self.logger = logger
        lwsLogger.withLock { if $0 == nil { $0 = logger } }   // lws logs process-wide: the first server's logger
        chat_lws_set_log(Int32(LLL_ERR | LLL_WARN), lwsLogLine)

        var o = chat_lws_options()
        o.port = Int32(options.port)
        o.http_callback = lwsHTTPCallback
        o.ws_callback = lwsWebSocketCallback
        o.user = Unmanaged.passUnretained(self).toOpaque()
        // The idle rule is ours (sweepIdle): lws' own would count only PONGs as proof of life, and
        // its PING overwrites the close reason set at ESTABLISHED.
        o.ping_secs = 0
        o.hangup_secs = 0
        o.ws_rx_buffer = 16 * 1024
        o.max_header_bytes = UInt32(options.maxHeaderBytes)
        let created: OpaquePointer? = options.host.withOptionalCString { iface in
            options.tlsCertificatePath.withOptionalCString { cert in
                options.tlsKeyPath.withOptionalCString { key in
                    options.webSocketProtocol.withCString { proto in
                        o.interface = iface
                        o.tls_cert_path = cert
                        o.tls_key_path = key
                        o.ws_protocol = proto
                        return chat_lws_create(&o)
                    }
                }
            }
        }
        guard let created else { throw LwsError.cannotListen(port: options.port) }
        handle = created
        context = chat_lws_context(created)
        port = Int(chat_lws_listen_port(created))
        let wakeable = UInt(bitPattern: context)   // a pointer is not Sendable; lws_cancel_service is thread-safe
        loop.setWaker { lws_cancel_service(OpaquePointer(bitPattern: wakeable)) }
    }

    deinit { if let handle { chat_lws_destroy(handle) } }

    /// Serves on the service thread until `loop.stop()`.
    public func run() {
        loop.preconditionInLoop()
        scheduleTick()
        while !loop.isStopRequested {
            if lws_service(context, 0) < 0 { break }
        }
        loop.drain()
    }

    private func scheduleTick() {
        guard let handle else { return }
        chat_lws_schedule(handle, options.tickMicroseconds, { arg in
            let server = Unmanaged<LwsServer>.fromOpaque(arg!).takeUnretainedValue()
            server.webSocket?.tick()
            server.sweepBodies()
            server.sweepIdle()
            server.scheduleTick()
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    fileprivate func makeID() -> UInt64 { nextID += 1; return nextID }

    // MARK: HTTP

    fileprivate func httpCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
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

    /// The idle rule: a PING after `pingIntervalSeconds` without a valid frame from the client (a PONG
    /// or any message), and after `hangupSeconds` the TCP connection is dropped without a close frame
    /// (a dead peer would not read it). Whatever state the connection is in: a reader that never
    /// reads cannot even take its close frame.
    func sweepIdle() {
        let now = DispatchTime.now().uptimeNanoseconds
        let ping = UInt64(options.pingIntervalSeconds) * 1_000_000_000
        let hangup = UInt64(options.hangupSeconds) * 1_000_000_000
        for connection in connections.values {
            let idle = now &- connection.lastHeard
            if idle >= hangup {
                if !connection.hungUp {
                    connection.hungUp = true
                    chat_lws_kill(connection.wsi)
                }
            } else if idle >= ping && !connection.pingSent && connection.state == .open {
                connection.pingSent = true
                connection.pingDue = true
                lws_callback_on_writable(connection.wsi)
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

    // MARK: WebSocket

    fileprivate func webSocketCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
                                       _ user: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
        let sessionID = user?.assumingMemoryBound(to: UInt64.self)
        switch reason {
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
            guard let wsi else { return -1 }
            let request = upgradeRequest(wsi)
            if let refusal = webSocket?.refusal(forUpgrade: request) {
                LwsServer.clientLog.log(logger, .info, category: "upgrade refused", "websocket upgrade refused",
                                        metadata: ["reason": "\(refusal)", "path": "\(request.path.prefix(200))"])
                // A plain HTTP answer tells the client why (403), instead of a dropped connection.
                _ = refusal.withCString { lws_return_http_status(wsi, 403, $0) }
                return -1
            }
        case LWS_CALLBACK_ESTABLISHED:
            guard let wsi, let sessionID else { return -1 }
            let id = makeID()
            sessionID.pointee = id
            let connection = WebSocketConnection(id: id, wsi: wsi, request: upgradeRequest(wsi), server: self)
            connection.heard(at: DispatchTime.now().uptimeNanoseconds)
            connections[id] = connection
            // lws 4.1.6 fails a control frame over 125 bytes or a length with bit 63 set without a
            // close frame unless a reason is already set: say 1002 then, as RFC 6455 §7.4.1 asks.
            chat_lws_close_reason(wsi, Int32(CloseCode.protocolError.rawValue), "protocol error")
            metrics.connectionOpened()
            webSocket?.opened(connection)
        case LWS_CALLBACK_RECEIVE:
            guard let wsi, let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            // Any valid frame is proof of life, as a PONG is (browsers answer PINGs, but a client that
            // sends is alive even when its library does not).
            connection.heard(at: DispatchTime.now().uptimeNanoseconds)
            guard connection.state == .open else { return 0 }   // closing: what the peer still sends is dropped
            return receive(connection, wsi: wsi, data: data, len: len)
        case LWS_CALLBACK_RECEIVE_PONG:
            guard let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            connection.heard(at: DispatchTime.now().uptimeNanoseconds)
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            guard let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            if connection.closeSent {
                // The ack of our close: end at the next service pass, before lws writes an echo or
                // the close reason preset at ESTABLISHED (a timeout kill sends no close frame).
                chat_lws_kill(wsi)
                return 0
            }
            // lws echoes the peer's close payload; one it lets through that RFC 6455 forbids (a 1-byte
            // payload, a code of 5000 or more) is answered with 1002 instead.
            let payload = data.map { UnsafeRawBufferPointer(start: $0, count: len) } ?? UnsafeRawBufferPointer(start: nil, count: 0)
            if !Self.isValidClosePayload(payload) {
                chat_lws_close_reason(wsi, Int32(CloseCode.protocolError.rawValue), "invalid close frame")
                return -1
            }
            return 0
        case LWS_CALLBACK_SERVER_WRITEABLE:
            guard let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            return connection.writeNext()
        case LWS_CALLBACK_CLOSED:
            guard let id = sessionID?.pointee, let connection = connections.removeValue(forKey: id) else { return 0 }
            connection.markClosed()
            metrics.connectionClosed()
            webSocket?.closed(connection)
        default:
            break
        }
        return 0
    }

    private func receive(_ connection: WebSocketConnection, wsi: OpaquePointer, data: UnsafeMutableRawPointer?, len: Int) -> Int32 {
        if lws_is_first_fragment(wsi) != 0 {
            connection.inbound.removeAll(keepingCapacity: connection.inbound.capacity <= 4096)
        }
        // The frame header declares its length: a message that will not fit is refused at its first
        // bytes, not after gigabytes have been read and dropped.
        let remaining = Int(clamping: lws_remaining_packet_payload(wsi))
        if remaining > options.maxInboundMessageBytes || connection.inbound.count + len + remaining > options.maxInboundMessageBytes {
            connection.inbound.removeAll()
            connection.close(.messageTooBig, reason: "message larger than \(options.maxInboundMessageBytes) bytes")
            return 0
        }
        if let data, len > 0 { connection.inbound.append(contentsOf: UnsafeRawBufferPointer(start: data, count: len)) }
        guard lws_is_final_fragment(wsi) != 0, remaining == 0 else { return 0 }
        let message = connection.inbound
        connection.inbound.removeAll(keepingCapacity: true)
        webSocket?.received(connection, message: message, binary: lws_frame_is_binary(wsi) != 0)
        return 0
    }

    /// RFC 6455 §5.5.1, §7.4: empty, or a 2-byte code in 1000-1003, 1007-1014 or 3000-4999 (and a
    /// UTF-8 reason, which lws checks itself).
    static func isValidClosePayload(_ payload: UnsafeRawBufferPointer) -> Bool {
        if payload.isEmpty { return true }
        guard payload.count >= 2 else { return false }
        let code = Int(payload[0]) << 8 | Int(payload[1])
        return (1000...1003).contains(code) || (1007...1014).contains(code) || (3000...4999).contains(code)
    }

    private func upgradeRequest(_ wsi: OpaquePointer) -> UpgradeRequest {
        UpgradeRequest(path: Self.header(wsi, WSI_TOKEN_GET_URI) ?? "/",
                       query: Self.header(wsi, WSI_TOKEN_HTTP_URI_ARGS),
                       origin: Self.header(wsi, WSI_TOKEN_ORIGIN),
                       host: Self.header(wsi, WSI_TOKEN_HOST),
                       authorization: Self.header(wsi, WSI_TOKEN_HTTP_AUTHORIZATION),
                       subprotocol: Self.header(wsi, WSI_TOKEN_PROTOCOL))
    }
}

public enum LwsError: Error, CustomStringConvertible {
    case cannotListen(port: Int)
    public var description: String {
        switch self {
        case .cannotListen(let port): return "cannot listen on port \(port) (in use, or the TLS files cannot be read)"
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

/// Minimal JSON text for adapter-level answers.
enum JSONText {
    static func object(_ fields: [String: String]) -> String {
        let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        return data.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

extension Optional where Wrapped == String {
    func withOptionalCString<R>(_ body: (UnsafePointer<CChar>?) -> R) -> R {
        switch self {
        case .some(let s): return s.withCString { body($0) }
        case .none: return body(nil)
        }
    }
}

private let lwsLogger = Mutex<Logger?>(nil)

extension LwsServer {
    /// Lines a client without credentials can cause are rate-limited (see `LogLimiter`).
    public static let clientLog = LogLimiter()
}

/// lws reports a malformed request from anyone (e.g. "Ran out of header data space") at its error
/// level: logged as a warning and rate-limited, so that clients cannot flood the log.
private func lwsLogLine(_ level: Int32, _ line: UnsafePointer<CChar>?) {
    guard let line else { return }
    let text = String(cString: line).trimmingCharacters(in: .whitespacesAndNewlines)
    LwsServer.clientLog.log(lwsLogger.withLock { $0 }, .warning, category: "lws", "lws: \(text.prefix(300))")
}

private func server(of wsi: OpaquePointer?) -> LwsServer? {
    guard let wsi, let ctx = lws_get_context(wsi), let user = lws_context_user(ctx) else { return nil }
    return Unmanaged<LwsServer>.fromOpaque(user).takeUnretainedValue()
}

private func lwsHTTPCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                          _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    guard let server = server(of: wsi) else { return lws_callback_http_dummy(wsi, reason, user, data, len) }
    return server.httpCallback(wsi, reason, user, data, len)
}

private func lwsWebSocketCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                               _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    guard let server = server(of: wsi) else { return 0 }
    return server.webSocketCallback(wsi, reason, user, data, len)
}
