import CLwsShim
import Foundation

/// Receives one client socket's events, on the loop's service thread.
public protocol WebSocketClientDelegate: AnyObject {
    func connected(_ socket: ClientSocket)
    func received(_ socket: ClientSocket, message: [UInt8])
    /// The connection failed or closed; `code` is the peer's close code when it sent one.
    func closed(_ socket: ClientSocket, code: UInt16?, reason: String)
}

/// A libwebsockets client context with its own service thread, for many connections at once
/// (chat-client holds one, chat-bench thousands). Like the server, one thread owns every socket;
/// other threads reach it through `post`.
public final class WebSocketClientLoop: @unchecked Sendable {   // unchecked: inbox and stop flag under `lock`; sockets on the loop thread
    private var handle: OpaquePointer?
    private var context: OpaquePointer?
    private let lock = NSLock()
    private var inbox: [() -> Void] = []
    private var stopped = false
    private var sockets: [UInt64: ClientSocket] = [:]
    private var nextID: UInt64 = 0
    private var thread: Thread?

    public init(protocolName: String = "chat.v1") throws {
        var o = chat_lws_options()
        o.client = 1
        o.http_callback = clientHTTPCallback
        o.ws_callback = clientCallback
        o.user = Unmanaged.passUnretained(self).toOpaque()
        o.ws_rx_buffer = 16 * 1024
        let created: OpaquePointer? = protocolName.withCString { name in
            o.ws_protocol = name
            return chat_lws_create(&o)
        }
        guard let created else { throw ClientError.cannotCreateContext }
        handle = created
        context = chat_lws_context(created)
    }

    deinit { if let handle { chat_lws_destroy(handle) } }

    /// Starts the service thread.
    public func start() {
        let thread = Thread { [self] in
            while true {
                lock.lock(); let stop = stopped; lock.unlock()
                if stop { break }
                if lws_service(context, 0) < 0 { break }
            }
        }
        thread.name = "ws-client"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    public func stop() {
        lock.lock(); stopped = true; lock.unlock()
        lws_cancel_service(context)
    }

    /// Runs `work` on the service thread. Safe from any thread.
    public func post(_ work: @escaping () -> Void) {
        lock.lock(); inbox.append(work); lock.unlock()
        lws_cancel_service(context)
    }

    /// Opens `url` (ws:// or wss://) for `delegate`. Safe from any thread; events arrive on the loop thread.
    public func connect(_ url: URL, insecureTLS: Bool = false, delegate: WebSocketClientDelegate) {
        post { [self] in
            nextID += 1
            let socket = ClientSocket(id: nextID, loop: self, delegate: delegate)
            socket.connectIssuedNs = monotonicNs()
            sockets[socket.id] = socket
            let tls = url.scheme == "wss" || url.scheme == "https"
            let host = url.host ?? "127.0.0.1"
            let port = url.port ?? (tls ? 443 : 80)
            let path = url.path.isEmpty ? "/" : url.path
            let opaque = UnsafeMutableRawPointer(bitPattern: UInt(socket.id))
            let wsi = host.withCString { h in
                path.withCString { p in chat_lws_connect(handle, h, Int32(port), p, tls ? 1 : 0, insecureTLS ? 1 : 0, opaque) }
            }
            if wsi == nil {
                sockets[socket.id] = nil
                delegate.closed(socket, code: nil, reason: "cannot connect to \(host):\(port)")
            }
        }
    }

    fileprivate func drain() {
        lock.lock(); let work = inbox; inbox.removeAll(); lock.unlock()
        for item in work { item() }
    }

    fileprivate func callback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
        if reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED { drain(); return 0 }
        guard let wsi, let raw = lws_get_opaque_user_data(wsi) else { return 0 }
        let id = UInt64(UInt(bitPattern: raw))
        guard let socket = sockets[id] else { return 0 }
        switch reason {
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
            socket.wsi = wsi
            socket.delegate?.connected(socket)
            if !socket.outbound.isEmpty || socket.closeRequested { lws_callback_on_writable(wsi) }
        case LWS_CALLBACK_CLIENT_RECEIVE:
            if lws_is_first_fragment(wsi) != 0 { socket.inbound.removeAll(keepingCapacity: true) }
            if let data, len > 0 { socket.inbound.append(contentsOf: UnsafeRawBufferPointer(start: data, count: len)) }
            if lws_is_final_fragment(wsi) != 0 && lws_remaining_packet_payload(wsi) == 0 {
                let message = socket.inbound
                socket.inbound.removeAll(keepingCapacity: true)
                socket.delegate?.received(socket, message: message)
            }
        case LWS_CALLBACK_CLIENT_WRITEABLE:
            if socket.head < socket.outbound.count {
                let frame = socket.outbound[socket.head]
                socket.head += 1
                if socket.head == socket.outbound.count { socket.outbound.removeAll(keepingCapacity: true); socket.head = 0 }
                var buffer = [UInt8](repeating: 0, count: chat_lws_pre + frame.count)
                buffer.replaceSubrange(chat_lws_pre..., with: frame)
                let n = buffer.withUnsafeMutableBufferPointer { chat_lws_write_text(wsi, $0.baseAddress! + chat_lws_pre, frame.count) }
                if n < frame.count { return -1 }
                if socket.firstWriteNs == 0 { socket.firstWriteNs = monotonicNs() }
                if socket.head < socket.outbound.count || socket.closeRequested { lws_callback_on_writable(wsi) }
            } else if socket.closeRequested {
                lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, nil, 0)
                return -1
            }
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            if let data, len >= 2 {
                let bytes = data.assumingMemoryBound(to: UInt8.self)
                socket.peerCloseCode = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
                socket.peerCloseReason = String(decoding: UnsafeBufferPointer(start: bytes + 2, count: len - 2), as: UTF8.self)
            }
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
            let why = data.map { String(cString: $0.assumingMemoryBound(to: CChar.self)) } ?? "connection error"
            finish(socket, code: nil, reason: why)
        case LWS_CALLBACK_CLIENT_CLOSED:
            finish(socket, code: socket.peerCloseCode, reason: socket.peerCloseReason ?? "closed")
        default:
            break
        }
        return 0
    }

    private func finish(_ socket: ClientSocket, code: UInt16?, reason: String) {
        guard sockets.removeValue(forKey: socket.id) != nil else { return }
        socket.wsi = nil
        socket.delegate?.closed(socket, code: code, reason: reason)
    }
}

/// One client WebSocket. Use it on the loop thread (inside delegate calls or `loop.post`).
public final class ClientSocket {
    public let id: UInt64
    public unowned let loop: WebSocketClientLoop
    public weak var delegate: WebSocketClientDelegate?
    public var context: AnyObject?
    fileprivate var wsi: OpaquePointer?
    fileprivate var outbound: [[UInt8]] = []
    fileprivate var head = 0
    fileprivate var inbound: [UInt8] = []
    fileprivate var closeRequested = false
    fileprivate var peerCloseCode: UInt16?
    fileprivate var peerCloseReason: String?
    /// CLOCK_MONOTONIC ns when its first frame went to the socket (0: none yet): a load generator
    /// tells its own lateness from the server's with it.
    public fileprivate(set) var firstWriteNs: UInt64 = 0
    /// When this loop's thread asked lws to connect (a busy loop runs `connect` late).
    public fileprivate(set) var connectIssuedNs: UInt64 = 0

    init(id: UInt64, loop: WebSocketClientLoop, delegate: WebSocketClientDelegate) {
        self.id = id
        self.loop = loop
        self.delegate = delegate
    }

    public var isOpen: Bool { wsi != nil }
    public var queuedFrames: Int { outbound.count - head }

    public func send(_ text: [UInt8]) {
        outbound.append(text)
        if let wsi { lws_callback_on_writable(wsi) }
    }

    public func send(_ text: String) { send(Array(text.utf8)) }

    public func close() {
        closeRequested = true
        if let wsi { lws_callback_on_writable(wsi) }
    }
}

private func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

public enum ClientError: Error, CustomStringConvertible {
    case cannotCreateContext
    public var description: String { "cannot create the libwebsockets client context" }
}

private func loop(of wsi: OpaquePointer?) -> WebSocketClientLoop? {
    guard let wsi, let ctx = lws_get_context(wsi), let user = lws_context_user(ctx) else { return nil }
    return Unmanaged<WebSocketClientLoop>.fromOpaque(user).takeUnretainedValue()
}

private func clientCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                            _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    loop(of: wsi)?.callback(wsi, reason, data, len) ?? 0
}

private func clientHTTPCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons, _ user: UnsafeMutableRawPointer?,
                                _ data: UnsafeMutableRawPointer?, _ len: Int) -> Int32 {
    if reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED { _ = loop(of: wsi)?.callback(wsi, reason, data, len) }
    return lws_callback_http_dummy(wsi, reason, user, data, len)
}
