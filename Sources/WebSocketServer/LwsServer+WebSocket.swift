import CLwsShim
import Foundation
import Logging
import ServiceLoop
import Synchronization

/// WebSocket sessions: upgrade, frames in, close handshakes (frames out: WebSocketConnection).
extension LwsServer {

    func webSocketCallback(_ wsi: OpaquePointer?, _ reason: lws_callback_reasons,
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
}
