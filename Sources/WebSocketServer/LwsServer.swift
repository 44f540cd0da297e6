import CLwsShim
import Foundation
import Logging
import ServiceLoop
import Synchronization

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
    var exchanges: [UInt64: HTTPExchange] = [:]
    /// Declared body bytes of the requests being read now (bounded by `maxBodyBytesInFlight`).
    public internal(set) var bodyBytesInFlight = 0
    public internal(set) var connections: [UInt64: WebSocketConnection] = [:]

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
        // lws mallocs the receive buffer at the upgrade and keeps it for the socket's life: at 16 KiB
        // it was most of an idle connection's heap (19 of 20 KiB; its resident share, 8.3-9.0 KiB
        // RSS per connection, varied with how many sockets opened at once). Frames are small (an auth
        // token is about 1 KiB) and larger ones arrive in pieces that `receive` joins. Sends stay
        // at up to 16 KiB per send(), as before (lws ties them to the receive buffer by default).
        o.ws_rx_buffer = 2 * 1024
        o.ws_tx_packet = 16 * 1024
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

    func makeID() -> UInt64 { nextID += 1; return nextID }
}

public enum LwsError: Error, CustomStringConvertible {
    case cannotListen(port: Int)
    public var description: String {
        switch self {
        case .cannotListen(let port): return "cannot listen on port \(port) (in use, or the TLS files cannot be read)"
        }
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
