import ChatDomain
import ClerkAuth
import Foundation
import ServiceLoop
import WebSocketServer

/// This instance's connections (service thread): every session by connection, the authenticated ones
/// by user, and the per-connection limits (message rate, authentication deadline).
final class ConnectionRegistry {
    let loop: ServiceLoop
    private let settings: ChannelSettings
    private(set) var sessions: [UInt64: ChatSession] = [:]
    private var byUser: [String: Set<UInt64>] = [:]

    init(loop: ServiceLoop, settings: ChannelSettings) {
        self.loop = loop
        self.settings = settings
    }

    var isEmpty: Bool { sessions.isEmpty }

    /// A new socket: its session waits for a token until the authentication deadline.
    func open(_ connection: any ClientConnection, recordID: String, now: Date) -> ChatSession {
        loop.preconditionInLoop()
        let session = ChatSession(connection: connection, recordID: recordID,
                                  authDeadline: now.addingTimeInterval(TimeInterval(settings.authTimeoutSeconds)),
                                  limiter: RateLimiter(rate: Double(settings.rateLimitPerSecond), burst: Double(settings.rateLimitBurst),
                                                       now: now.timeIntervalSinceReferenceDate))
        sessions[connection.id] = session
        return session
    }

    func session(_ connection: any ClientConnection) -> ChatSession? { sessions[connection.id] }

    /// The session becomes reachable by its user id (fan-out, Clerk events).
    func authenticated(_ session: ChatSession, _ claims: SessionClaims) {
        loop.preconditionInLoop()
        session.state = .authenticated(claims)
        byUser[claims.userID, default: []].insert(session.connection.id)
    }

    /// The socket closed: returns the session with the state it had (now `.closed`).
    func remove(_ connection: any ClientConnection) -> (ChatSession, ChatSession.State)? {
        loop.preconditionInLoop()
        guard let session = sessions.removeValue(forKey: connection.id) else { return nil }
        let previous = session.state
        session.state = .closed
        if case .authenticated(let claims) = previous {
            byUser[claims.userID]?.remove(connection.id)
            if byUser[claims.userID]?.isEmpty == true { byUser[claims.userID] = nil }
        }
        return (session, previous)
    }

    /// The message rate limit: false when this frame is refused (answered here; repeated violations close).
    func admit(_ session: ChatSession, now: Date) -> Bool {
        if session.limiter.allow(now: now.timeIntervalSinceReferenceDate) {
            session.rateViolations = 0
            return true
        }
        session.rateViolations += 1
        if session.rateViolations > settings.rateLimitBurst {
            session.close(.rateLimited, "rate limit exceeded")
        } else {
            session.fail(nil, .rateLimited, "more than \(settings.rateLimitPerSecond) messages per second")
        }
        return false
    }

    /// Closes the sessions that let their authentication deadline pass.
    func closeUnauthenticated(now: Date) {
        for session in sessions.values {
            switch session.state {
            case .awaitingAuth(let deadline), .verifying(let deadline):
                if now > deadline { session.close(.authenticationTimeout, "no valid auth message within \(settings.authTimeoutSeconds) s") }
            default: break
            }
        }
    }

    /// Queues one encoded frame to every connection of `users` (minus `exclude`).
    func send(_ frame: OutboundFrame, to users: [String], excluding exclude: String? = nil) {
        loop.preconditionInLoop()
        for user in users where user != exclude {
            for id in byUser[user] ?? [] { sessions[id]?.connection.send(frame) }
        }
    }

    func send(_ frame: OutboundFrame, toConnections ids: some Sequence<UInt64>) {
        for id in ids { sessions[id]?.connection.send(frame) }
    }

    /// Closes a user's sessions, registering ones included (a Clerk event must reach those too).
    func close(user: String, _ code: ChannelCloseCode, _ reason: String) {
        for session in sessions.values where session.claims?.userID == user { session.close(code, reason) }
    }

    func close(clerkSession: String, _ code: ChannelCloseCode, _ reason: String) {
        for session in sessions.values where session.claims?.sessionID == clerkSession { session.close(code, reason) }
    }

    func closeAll(_ code: ChannelCloseCode, _ reason: String) {
        for session in sessions.values { session.close(code, reason) }
    }
}
