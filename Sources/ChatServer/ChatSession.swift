import ChatDomain
import ClerkAuth
import Foundation
import WebSocketServer

/// One WebSocket's chat state (service thread). Its lifecycle is `state`.
final class ChatSession {
    enum State {
        /// Connected, no valid token yet; closed with 4001 at the deadline.
        case awaitingAuth(deadline: Date)
        /// The token names a key being fetched (JWKS).
        case verifying(deadline: Date)
        /// Token verified; the connection record is being written.
        case registering(SessionClaims)
        case authenticated(SessionClaims)
        case closed
    }

    let connection: any ClientConnection
    /// The `connections` record id: unique across instances.
    let recordID: String
    var state: State
    var limiter: RateLimiter
    var rateViolations = 0
    /// Frames that arrived while registering, handled once registered (bounded).
    var backlog: [[UInt8]] = []
    var presenceSubscriptions: Set<String> = []
    /// When this connection last sent a typing signal, per conversation (rate limit).
    var lastTyping: [String: Date] = [:]

    init(connection: any ClientConnection, recordID: String, authDeadline: Date, limiter: RateLimiter) {
        self.connection = connection
        self.recordID = recordID
        self.state = .awaitingAuth(deadline: authDeadline)
        self.limiter = limiter
        ServerMetrics.shared.sessionCreated()
    }

    // Counted so a test (and an operator) sees every closed connection's session released.
    deinit { ServerMetrics.shared.sessionReleased() }

    var claims: SessionClaims? {
        switch state {
        case .authenticated(let c), .registering(let c): return c
        default: return nil
        }
    }

    var isAuthenticated: Bool { if case .authenticated = state { return true } else { return false } }
    var isClosed: Bool { if case .closed = state { return true } else { return false } }

    func send(_ frame: ServerFrame) { connection.send(OutboundFrame(frame.encoded())) }

    func fail(_ id: String?, _ code: ErrorCode, _ message: String) {
        send(.error(id: id, code: code, message: message))
    }

    func fail(_ id: String?, _ failure: RequestFailure) { fail(id, failure.code, failure.message) }

    func close(_ code: ChannelCloseCode, _ reason: String) {
        connection.close(CloseCode(rawValue: code.rawValue), reason: reason)
    }
}
