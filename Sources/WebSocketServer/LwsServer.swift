import CLwsShim
import Foundation
import Logging

/// Routes HTTP requests (service thread only).
public protocol HTTPService: AnyObject {
    func route(_ head: HTTPRequestHead) -> HTTPAction
}

/// Receives the WebSocket events (service thread only).
public protocol WebSocketService: AnyObject {
    /// Decides whether an upgrade may proceed; nil accepts, a string names the refusal for the log.
    func refusal(forUpgrade request: UpgradeRequest) -> String?
    func opened(_ connection: WebSocketConnection)
    func received(_ connection: WebSocketConnection, message: [UInt8])
    func closed(_ connection: WebSocketConnection)
    /// Called every `tickMicroseconds` (default 200 ms) for timeouts and housekeeping.
    func tick()
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
    private let inboxLock = NSLock()
    private var inbox: [() -> Void] = []
    private var stopRequested = false
    private var nextID: UInt64 = 0
    private var exchanges: [UInt64: HTTPExchange] = [:]
    public private(set) var connections: [UInt64: WebSocketConnection] = [:]
    private var serviceThread: pthread_t?

    public init(options: Options, http: HTTPService, webSocket: WebSocketService,
                metrics: TransportMetrics, logger: Logger) throws {
        self.options = options
        self.http = http
        self.webSocket = webSocket
        self.metrics = metrics
        self.logger = logger
        lwsLogger = logger
        chat_lws_set_log(Int32(LLL_ERR | LLL_WARN), lwsLogLine)

        var o = chat_lws_options()
        o.port = Int32(options.port)
        o.http_callback = lwsHTTPCallback
        o.ws_callback = lwsWebSocketCallback
        o.user = Unmanaged.passUnretained(self).toOpaque()
        o.ping_secs = UInt16(options.pingIntervalSeconds)
        o.hangup_secs = UInt16(options.hangupSeconds)
        o.ws_rx_buffer = 16 * 1024
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
    }

    deinit { if let handle { chat_lws_destroy(handle) } }

    /// Runs the service loop on the calling thread until `stop()`.
    public func run() {
        serviceThread = pthread_self()
        scheduleTick()
        while true {
            inboxLock.lock()
            let stop = stopRequested
            inboxLock.unlock()
            if stop { break }
            if lws_service(context, 0) < 0 { break }
        }
        drainInbox()
    }

    /// Queues `work` for the service thread. Safe from any thread.
    public func post(_ work: @escaping () -> Void) {
        inboxLock.lock()
        inbox.append(work)
        inboxLock.unlock()
        lws_cancel_service(context)
    }

    /// Ends `run()` after the current iteration. Safe from any thread.
    public func stop() {
        inboxLock.lock()
        stopRequested = true
        inboxLock.unlock()
        lws_cancel_service(context)
    }

    func drainInbox() {
        inboxLock.lock()
        let work = inbox
        inbox.removeAll(keepingCapacity: true)
        inboxLock.unlock()
        for item in work { item() }
    }

    private func scheduleTick() {
        guard let handle else { return }
        chat_lws_schedule(handle, options.tickMicroseconds, { arg in
            let server = Unmanaged<LwsServer>.fromOpaque(arg!).takeUnretainedValue()
            server.webSocket?.tick()
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
            drainInbox()
        case LWS_CALLBACK_HTTP:
            guard let wsi, let sessionID else { return -1 }
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
            return exchange.writeNext(metrics: metrics, closeAfter: { [weak self] in self?.exchanges[id] = nil })
        case LWS_CALLBACK_CLOSED_HTTP:
            if let id = sessionID?.pointee { exchanges[id] = nil }
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
        switch http.route(exchange.head) {
        case .respond(let response):
            exchange.respond(response)
        case .readBody(let limit, let keep, let handler):
            let wsi = exchange.wsi
            if Self.header(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) != nil {
                exchange.respond(.error(411, "a Content-Length is required (chunked bodies are not accepted)", close: true))
                return 0
            }
            guard let lengthText = Self.header(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH), let length = Int(lengthText) else {
                exchange.respond(.error(411, "a Content-Length is required", close: true))
                return 0
            }
            if length > limit {
                exchange.respond(.error(413, "body larger than \(limit) bytes", close: true))
                return 0
            }
            var kept: [String: String] = [:]
            for name in keep { if let v = Self.header(wsi, named: name) { kept[name.lowercased()] = v } }
            exchange.expectBody(limit: limit, headers: kept, handler: handler)
        }
        return 0
    }

    private func finishBody(_ exchange: HTTPExchange) {
        guard case .readingBody(let limit, let headers, let handler) = exchange.state else { return }
        if exchange.body.count > limit {
            exchange.respond(.error(413, "body larger than \(limit) bytes", close: true))
            return
        }
        exchange.state = .handling
        let request = HTTPRequest(method: exchange.head.method, path: exchange.head.path, headers: headers, body: exchange.body)
        handler(request, HTTPResponder(server: self, exchangeID: exchange.id))
    }

    func respond(_ id: UInt64, _ response: HTTPResponse) {
        // The client may have gone while a worker was busy: then there is nobody to answer.
        exchanges[id]?.respond(response)
    }

    static func header(_ wsi: OpaquePointer, _ token: lws_token_indexes) -> String? {
        let length = Int(chat_lws_header_length(wsi, token))
        guard length > 0 else { return nil }
        var buffer = [CChar](repeating: 0, count: length + 1)
        guard chat_lws_header(wsi, token, &buffer, Int32(buffer.count)) >= 0 else { return nil }
        return String(cString: buffer)
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
            return n >= 0 ? String(cString: buffer) : nil
        }
    }

    // MARK: WebSocket

    fileprivate func webSocketCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
                                       _ user: UnsafeMutableRawPointer?, _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
        let sessionID = user?.assumingMemoryBound(to: UInt64.self)
        switch reason {
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            drainInbox()
        case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
            guard let wsi else { return -1 }
            let request = upgradeRequest(wsi)
            if let refusal = webSocket?.refusal(forUpgrade: request) {
                logger.info("websocket upgrade refused", metadata: ["reason": "\(refusal)", "path": "\(request.path)"])
                // A plain HTTP answer tells the client why (403), instead of a dropped connection.
                _ = refusal.withCString { lws_return_http_status(wsi, 403, $0) }
                return -1
            }
        case LWS_CALLBACK_ESTABLISHED:
            guard let wsi, let sessionID else { return -1 }
            let id = makeID()
            sessionID.pointee = id
            let connection = WebSocketConnection(id: id, wsi: wsi, request: upgradeRequest(wsi), server: self)
            connections[id] = connection
            metrics.connectionOpened()
            webSocket?.opened(connection)
        case LWS_CALLBACK_RECEIVE:
            guard let wsi, let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            guard connection.state == .open else { return 0 }   // closing: what the peer still sends is dropped
            return receive(connection, wsi: wsi, data: data, len: len)
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            // The ack of our close: end now (nonzero), with no second close frame echoed back.
            guard let id = sessionID?.pointee, let connection = connections[id] else { return 0 }
            return connection.closeSent ? -1 : 0
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
            connection.inboundOverflow = false
        }
        if connection.inbound.count + len > options.maxInboundMessageBytes {
            connection.inboundOverflow = true
        } else if let data, len > 0 {
            connection.inbound.append(contentsOf: UnsafeRawBufferPointer(start: data, count: len))
        }
        guard lws_is_final_fragment(wsi) != 0, lws_remaining_packet_payload(wsi) == 0 else { return 0 }
        if connection.inboundOverflow {
            connection.close(.messageTooBig, reason: "message larger than \(options.maxInboundMessageBytes) bytes")
            return 0
        }
        let message = connection.inbound
        connection.inbound.removeAll(keepingCapacity: true)
        webSocket?.received(connection, message: message)
        return 0
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

nonisolated(unsafe) private var lwsLogger: Logger?

private func lwsLogLine(_ level: Int32, _ line: UnsafePointer<CChar>?) {
    guard let line else { return }
    let text = String(cString: line).trimmingCharacters(in: .whitespacesAndNewlines)
    if level & Int32(LLL_ERR) != 0 { lwsLogger?.error("lws: \(text)") } else { lwsLogger?.warning("lws: \(text)") }
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
