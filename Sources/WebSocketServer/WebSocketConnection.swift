import CLwsShim

/// Standard and application close codes used by the channel.
public struct CloseCode: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public static let normal = CloseCode(rawValue: 1000)
    public static let goingAway = CloseCode(rawValue: 1001)
    public static let protocolError = CloseCode(rawValue: 1002)
    public static let policyViolation = CloseCode(rawValue: 1008)
    public static let messageTooBig = CloseCode(rawValue: 1009)
    public static let internalError = CloseCode(rawValue: 1011)
    public static let serviceRestart = CloseCode(rawValue: 1012)
}

/// The upgrade request as copied when the socket opened.
public struct UpgradeRequest: Sendable {
    public init(path: String, query: String? = nil, origin: String? = nil, host: String? = nil,
                authorization: String? = nil, subprotocol: String? = nil) {
        self.path = path
        self.query = query
        self.origin = origin
        self.host = host
        self.authorization = authorization
        self.subprotocol = subprotocol
    }

    public let path: String
    public let query: String?
    public let origin: String?
    /// The Host header: a page served by this server has an Origin naming it.
    public let host: String?
    public let authorization: String?
    public let subprotocol: String?
}

/// One WebSocket, owned by the service thread. Frames are queued and written when lws says the
/// socket is writable; a queue over its cap closes the connection (a slow reader must not hold memory).
public final class WebSocketConnection: ClientConnection {
    public enum State: Equatable {
        case open
        case closing(CloseCode, String)
        /// The close frame is written; waiting (bounded) for the peer's close before the socket goes.
        case closeSent(CloseCode)
        case closed
    }

    public let id: UInt64
    /// Bytes queued and not yet written.
    public var pendingBytes: Int { queuedBytes }
    public let request: UpgradeRequest
    public private(set) var state: State = .open

    let wsi: OpaquePointer
    unowned let server: LwsServer
    var outbound: [OutboundFrame] = []
    var outboundHead = 0
    var queuedBytes = 0
    var inbound: [UInt8] = []
    /// The idle rule (`LwsServer.sweepIdle`): when the client last sent a valid frame, and the PING.
    var lastHeard: UInt64 = 0
    var pingSent = false
    var pingDue = false
    var hungUp = false

    func heard(at now: UInt64) {
        lastHeard = now
        pingSent = false
    }

    init(id: UInt64, wsi: OpaquePointer, request: UpgradeRequest, server: LwsServer) {
        self.id = id
        self.wsi = wsi
        self.request = request
        self.server = server
    }

    /// Queues a frame. Returns false when the connection is closing or its queue overflowed. The cap
    /// is on what the client has left unread: a frame into an empty queue is always taken, so one
    /// large reply is never by itself a slow consumer (the server bounds its frames: pages by bytes).
    @discardableResult
    public func send(_ frame: OutboundFrame) -> Bool {
        server.loop.preconditionInLoop()
        guard state == .open else { return false }
        if queuedBytes > 0 && queuedBytes + frame.count > server.options.maxOutboundBytes {
            server.metrics.slowConsumerClosed()
            close(server.options.slowConsumerCloseCode, reason: "slow consumer: outbound queue full")
            return false
        }
        outbound.append(frame)
        queuedBytes += frame.count
        lws_callback_on_writable(wsi)
        return true
    }

    /// Sends what is queued, then closes with `code`.
    public func close(_ code: CloseCode, reason: String) {
        server.loop.preconditionInLoop()
        guard state == .open else { return }
        state = .closing(code, String(reason.prefix(120)))
        lws_callback_on_writable(wsi)
    }

    /// Writes what is queued: several frames in one send() when more than one waits (a batch of
    /// messages to one member), else one. Returns -1 to make lws close the socket.
    func writeNext() -> Int32 {
        if pingDue {
            pingDue = false
            guard state == .open else { return writeNext() }   // no frame may follow our close
            if chat_lws_write_ping(wsi) < 0 { return -1 }
            if outboundHead < outbound.count || isClosing { lws_callback_on_writable(wsi) }
            return 0
        }
        let waiting = outbound.count - outboundHead
        if waiting > 0 {
            let complete: Bool
            if waiting > 1 {
                complete = writeCoalesced()
            } else {
                let frame = dequeue()
                complete = chat_lws_write_text(wsi, frame.payload, frame.count) >= frame.count
            }
            if !complete { return -1 }
            if outboundHead < outbound.count || isClosing { lws_callback_on_writable(wsi) }
            return 0
        }
        if case .closing(let code, let reason) = state {
            let payload = [UInt8(code.rawValue >> 8), UInt8(code.rawValue & 0xff)] + Array(reason.utf8.prefix(123))
            let frame = OutboundFrame(payload)
            state = .closeSent(code)
            if chat_lws_send_close(wsi, frame.payload, frame.count, 3) < frame.count { return -1 }
        }
        return 0
    }

    /// The next queued frame, taken off the queue.
    private func dequeue() -> OutboundFrame {
        let frame = outbound[outboundHead]
        outbound[outboundHead] = OutboundFrame.empty
        outboundHead += 1
        queuedBytes -= frame.count
        if outboundHead == outbound.count {
            outbound.removeAll(keepingCapacity: outbound.count <= 64)
            outboundHead = 0
        }
        return frame
    }

    /// Frames the queued messages into the server's scratch buffer (text, FIN, unmasked: server to
    /// client), at least two and up to `coalesceLimit` bytes, and writes them at once. False when lws
    /// did not take them all.
    private func writeCoalesced() -> Bool {
        var bytes: [UInt8] = []
        swap(&bytes, &server.coalesceBuffer)   // taken, not copied: one buffer reused by every write
        defer { swap(&bytes, &server.coalesceBuffer) }
        bytes.removeAll(keepingCapacity: true)
        bytes.append(contentsOf: repeatElement(0, count: chat_lws_pre))
        var frames = 0
        while outboundHead < outbound.count {
            if frames >= 2 && bytes.count + outbound[outboundHead].count > Self.coalesceLimit { break }
            let frame = dequeue()
            frames += 1
            Self.appendHeader(textLength: frame.count, to: &bytes)
            bytes.append(contentsOf: UnsafeBufferPointer(start: frame.payload, count: frame.count))
        }
        let length = bytes.count - chat_lws_pre
        let written = bytes.withUnsafeMutableBufferPointer { chat_lws_write_frames(wsi, $0.baseAddress! + chat_lws_pre, length) }
        return Int(written) >= length
    }

    static let coalesceLimit = 64 * 1024

    /// RFC 6455 §5.2: FIN + text opcode, then the payload length in 7, 7+16 or 7+64 bits.
    static func appendHeader(textLength n: Int, to bytes: inout [UInt8]) {
        bytes.append(0x81)
        if n < 126 {
            bytes.append(UInt8(n))
        } else if n < 65_536 {
            bytes.append(126)
            bytes.append(UInt8(n >> 8)); bytes.append(UInt8(n & 0xff))
        } else {
            bytes.append(127)
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8((UInt64(n) >> UInt64(shift)) & 0xff)) }
        }
    }

    var isClosing: Bool { if case .closing = state { return true } else { return false } }
    var closeSent: Bool { if case .closeSent = state { return true } else { return false } }

    func markClosed() { state = .closed; outbound.removeAll(); queuedBytes = 0 }
}

extension OutboundFrame {
    static let empty = OutboundFrame([UInt8]())
}
