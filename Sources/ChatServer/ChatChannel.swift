import ChatDomain
import ClerkAuth
import Foundation
import Logging
import Metrics
import MongoStore
import ServiceLoop
import WebSocketServer

/// The WebSocket chat channel (service thread): who may upgrade, each connection's lifecycle
/// (authentication, registration, refresh), frame decoding and dispatch, and draining at shutdown.
/// Its parts: the registry (connections and limits), presence, the broker (fan-out across instances)
/// and the request handler (chat requests to the stores).
public final class ChatChannel: WebSocketService {
    static let protocolVersion = "chat.v1"

    let loop: ServiceLoop
    let settings: ChannelSettings
    let instanceID: String
    private let logger: Logger
    private let authenticator: SessionAuthenticator
    let registry: ConnectionRegistry
    let presence: PresenceService
    let broker: EventBroker
    let requests: ChatRequestHandler
    private var draining: (() -> Void)?
    private var drainingOthersIdle: () -> Bool = { true }

    /// Made on the service thread.
    public init(loop: ServiceLoop, settings: ChannelSettings, database: Database, instanceID: String, logger: Logger) {
        loop.preconditionInLoop()
        self.loop = loop
        self.settings = settings
        self.instanceID = instanceID
        self.logger = logger
        authenticator = SessionAuthenticator(loop: loop, settings: settings, logger: logger)
        registry = ConnectionRegistry(loop: loop, settings: settings)
        presence = PresenceService(loop: loop, database: database, registry: registry, instanceID: instanceID,
                                   settings: settings, logger: logger)
        broker = EventBroker(loop: loop, database: database, instanceID: instanceID, registry: registry,
                             presence: presence, logger: logger)
        requests = ChatRequestHandler(loop: loop, database: database, settings: settings, instanceID: instanceID,
                                      presence: presence, broker: broker, logger: logger)
        database.recordSessions(asInstance: instanceID)
    }

    /// Fetches the JWKS when configured.
    public func start() { authenticator.start() }

    /// Opens the change streams (any thread; once): other instances' events, presence, Clerk events.
    public func changeFeeds() -> @Sendable () -> Void { broker.openFeeds() }

    public func stopChangeFeeds() { broker.stopFeeds() }

    // MARK: WebSocketService

    public func refusal(forUpgrade request: UpgradeRequest) -> String? {
        if request.path != "/ws" { return "path \(request.path) does not upgrade" }
        if draining != nil { return "shutting down" }
        if let origin = request.origin, !settings.allowedOrigins.contains(origin), !Self.sameOrigin(origin, host: request.host) {
            return "origin \(origin) is not allowed"
        }
        return nil
    }

    /// The page this server served itself (`GET /`): its Origin names the Host it was loaded from.
    static func sameOrigin(_ origin: String, host: String?) -> Bool {
        guard let host, !host.isEmpty else { return false }
        return origin == "http://\(host)" || origin == "https://\(host)"
    }

    public func opened(_ connection: any ClientConnection) {
        let session = registry.open(connection, recordID: "\(instanceID):\(connection.id)", now: Date())
        if let header = connection.request.authorization, header.lowercased().hasPrefix("bearer ") {
            authenticate(session, token: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces), requestID: nil)
        }
    }

    public func received(_ connection: any ClientConnection, message: [UInt8], binary: Bool) {
        guard let session = registry.session(connection), registry.admit(session, now: Date()) else { return }
        // Frames are UTF-8 JSON, binary ones too (lws checked a text frame's UTF-8 already).
        if binary && !ClientFrame.isValidUTF8(message) {
            return session.close(.invalidPayload, "message is not valid UTF-8")
        }
        if case .registering = session.state {
            if session.backlog.count < 32 { session.backlog.append(message) } else { session.fail(nil, .rateLimited, "wait for welcome") }
            return
        }
        handle(session, message)
    }

    public func closed(_ connection: any ClientConnection) {
        guard let (session, previous) = registry.remove(connection) else { return }
        presence.closed(session, previous: previous)
    }

    public func tick() {
        let now = Date()
        registry.closeUnauthenticated(now: now)
        presence.tick(now: now, draining: draining != nil)
        broker.tick(now: now)
        if let done = draining, registry.isEmpty, presence.isIdle, requests.isIdle, drainingOthersIdle() {
            draining = { }
            presence.leave(done)
        }
    }

    /// Closes every socket with the "reconnect" code, waits for their presence updates and for
    /// `othersIdle` (work in flight elsewhere, such as webhooks being applied), removes this
    /// instance's record, then calls `done`.
    func drain(until othersIdle: @escaping () -> Bool = { true }, done: @escaping () -> Void) {
        drainingOthersIdle = othersIdle
        draining = done
        presence.closingAllSince = Date()
        registry.closeAll(.serviceRestart, "server restarting: reconnect")
    }

    // MARK: frames

    private func handle(_ session: ChatSession, _ message: [UInt8]) {
        let frame: ClientFrame
        do { frame = try ClientFrame.decode(message) } catch {
            session.fail(error.id, error.code, error.message)
            return
        }
        switch frame.request {
        case .auth(let token):
            if case .verifying = session.state {
                return session.fail(frame.id, .rateLimited, "authentication in progress: wait for welcome")
            }
            guard case .awaitingAuth = session.state else {
                return session.fail(frame.id, .alreadyAuthenticated, "this connection is already authenticated: use refresh")
            }
            authenticate(session, token: token, requestID: frame.id)
        case .ping:
            session.send(.ok(id: frame.id, data: ["time": .string(JSONValue.iso8601(Date()))]))
        case .refresh(let token):
            guard case .authenticated(let claims) = session.state else { return unauthenticated(session, frame.id) }
            refresh(session, claims, token: token, requestID: frame.id)
        default:
            guard case .authenticated(let claims) = session.state else { return unauthenticated(session, frame.id) }
            requests.handle(session, claims, frame)
        }
    }

    private func unauthenticated(_ session: ChatSession, _ id: String?) {
        session.fail(id, .unauthenticated, "authenticate first: {\"type\":\"auth\",\"token\":\"...\"}")
    }

    // MARK: authentication

    private func authenticate(_ session: ChatSession, token: String, requestID: String?) {
        guard !session.isClosed else { return }
        let outcome = authenticator.verify(token) { [weak self, weak session] in
            guard let self, let session else { return }
            self.authenticate(session, token: token, requestID: requestID)
        }
        switch outcome {
        case .pending:
            session.state = .verifying(deadline: Date().addingTimeInterval(TimeInterval(settings.authTimeoutSeconds)))
        case .refused(let rejection):
            Counter(label: "chat_ws_auth_total", dimensions: [("outcome", rejection.reason)]).increment()
            LwsServer.clientLog.log(logger, .info, category: "token refused", "token refused", metadata: ["reason": "\(rejection.reason)"])
            let expired = rejection == .expired
            session.fail(requestID, expired ? .tokenExpired : .tokenInvalid, "token refused: \(rejection.reason)")
            session.close(expired ? .tokenExpired : .tokenInvalid, rejection.reason)
        case .verified(let claims):
            Counter(label: "chat_ws_auth_total", dimensions: [("outcome", "verified")]).increment()
            session.state = .registering(claims)
            presence.register(session, claims) { [self] result in registered(session, claims, requestID: requestID, result: result) }
        }
    }

    private func registered(_ session: ChatSession, _ claims: SessionClaims, requestID: String?,
                            result: Result<PresenceStore.ConnectOutcome, any Error>) {
        switch result {
        case .success(.online):
            registry.authenticated(session, claims)
            session.send(.welcome(id: requestID, userID: claims.userID, sessionID: claims.sessionID,
                                  connectionID: session.recordID, protocolVersion: Self.protocolVersion))
            let backlog = session.backlog
            session.backlog.removeAll()
            for message in backlog { handle(session, message) }
        case .success(.userDeleted):
            session.fail(requestID, .userDeleted, "this user was deleted")
            session.close(.userDeleted, "user deleted")
        case .success(.sessionEnded):
            session.fail(requestID, .tokenInvalid, "this session has ended")
            session.close(.sessionEnded, "session ended")
        case .failure(let error):
            logger.error("could not register connection", metadata: ["error": "\(error)"])
            session.fail(requestID, .unavailable, "database unavailable, reconnect later")
            session.close(.tryAgainLater, "database unavailable")
        }
    }

    private func refresh(_ session: ChatSession, _ claims: SessionClaims, token: String, requestID: String?) {
        let outcome = authenticator.verify(token) { [weak self, weak session] in
            guard let self, let session, case .authenticated(let c) = session.state else { return }
            self.refresh(session, c, token: token, requestID: requestID)
        }
        switch outcome {
        case .pending: break
        case .refused(let rejection):
            session.fail(requestID, rejection == .expired ? .tokenExpired : .tokenInvalid, "token refused: \(rejection.reason)")
        case .verified(let fresh):
            guard fresh.userID == claims.userID else {
                return session.fail(requestID, .wrongUser, "the token is for another user")
            }
            session.state = .authenticated(fresh)
            session.send(.ok(id: requestID, data: ["expiresAt": .string(JSONValue.iso8601(fresh.expiresAt))]))
        }
    }
}
