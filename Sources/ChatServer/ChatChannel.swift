import ChatDomain
import ClerkAuth
import Foundation
import Logging
import Metrics
import MongoStore
import WebSocketServer

/// The WebSocket chat channel (service thread): authentication, presence, protocol hygiene. Every
/// database call is a job on the worker pool whose result comes back through `post`.
final class ChatChannel: WebSocketService, ClerkSessionListener {
    static let protocolVersion = "chat.v1"

    let settings: ChannelSettings
    let database: Database
    let logger: Logger
    let instanceID: String
    let post: (@escaping () -> Void) -> Void
    private let authenticator: SessionAuthenticator
    private let presence = PresenceHub()
    var sessions: [UInt64: ChatSession] = [:]
    var sessionsByUser: [String: Set<UInt64>] = [:]
    var gate = SequenceGate<ChatStore.Fanout>()
    private(set) var batcher: MessageBatcher!
    private var pendingPresenceJobs = 0
    /// Disconnects that could not be written (database away): retried with each heartbeat, so the
    /// user does not stay online once the database is back.
    private var failedDisconnects: [(recordID: String, userID: String, at: Date)] = []
    private var nextHeartbeat = Date.distantPast
    /// Set once a heartbeat has written this instance's record: a later re-creation means it was swept.
    private var instanceRecorded = false
    private var draining: (() -> Void)?
    private var drainingOthersIdle: () -> Bool = { true }
    private let hostName = ProcessInfo.processInfo.hostName

    init(settings: ChannelSettings, database: Database, instanceID: String, logger: Logger,
         post: @escaping (@escaping () -> Void) -> Void) {
        self.settings = settings
        self.database = database
        self.instanceID = instanceID
        self.logger = logger
        self.post = post
        authenticator = SessionAuthenticator(settings: settings, logger: logger, post: post)
        batcher = MessageBatcher(database: database, maxBatch: settings.maxBatch, instanceID: instanceID, logger: logger,
                                 post: post) { [unowned self] fanout in deliver(fanout) }
        database.recordSessions(asInstance: instanceID)
    }

    func start() { authenticator.start() }

    // MARK: WebSocketService

    func refusal(forUpgrade request: UpgradeRequest) -> String? {
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

    func opened(_ connection: WebSocketConnection) {
        let now = Date()
        let session = ChatSession(connection: connection, recordID: "\(instanceID):\(connection.id)",
                                  authDeadline: now.addingTimeInterval(TimeInterval(settings.authTimeoutSeconds)),
                                  limiter: RateLimiter(rate: Double(settings.rateLimitPerSecond), burst: Double(settings.rateLimitBurst),
                                                       now: now.timeIntervalSinceReferenceDate))
        sessions[connection.id] = session
        if let header = connection.request.authorization, header.lowercased().hasPrefix("bearer ") {
            authenticate(session, token: String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces), requestID: nil)
        }
    }

    func received(_ connection: WebSocketConnection, message: [UInt8]) {
        guard let session = sessions[connection.id] else { return }
        if !session.limiter.allow(now: Date().timeIntervalSinceReferenceDate) {
            session.rateViolations += 1
            if session.rateViolations > settings.rateLimitBurst {
                session.close(.rateLimited, "rate limit exceeded")
            } else {
                session.fail(nil, .rateLimited, "more than \(settings.rateLimitPerSecond) messages per second")
            }
            return
        }
        session.rateViolations = 0
        if case .registering = session.state {
            if session.backlog.count < 32 { session.backlog.append(message) } else { session.fail(nil, .rateLimited, "wait for welcome") }
            return
        }
        handle(session, message)
    }

    func closed(_ connection: WebSocketConnection) {
        guard let session = sessions.removeValue(forKey: connection.id) else { return }
        let previous = session.state
        session.state = .closed
        presence.unsubscribe(session, from: Array(session.presenceSubscriptions))
        if case .authenticated(let claims) = previous {
            sessionsByUser[claims.userID]?.remove(connection.id)
            if sessionsByUser[claims.userID]?.isEmpty == true { sessionsByUser[claims.userID] = nil }
            unregister(session, userID: claims.userID)
        }
        // .registering: the connect job's completion sees .closed and unregisters.
    }

    func tick() {
        let now = Date()
        for session in sessions.values {
            switch session.state {
            case .awaitingAuth(let deadline), .verifying(let deadline):
                if now > deadline { session.close(.authenticationTimeout, "no valid auth message within \(settings.authTimeoutSeconds) s") }
            default: break
            }
        }
        presence.flush(sessions: sessions)
        // Messages held for a predecessor that never came to this instance: deliver them anyway;
        // clients see the gap in the sequence numbers and page history.
        for fanout in gate.expire(now: now) { send(fanout) }
        if now >= nextHeartbeat && draining == nil {
            nextHeartbeat = now.addingTimeInterval(TimeInterval(settings.heartbeatSeconds))
            heartbeat(now)
        }
        if let done = draining, sessions.isEmpty, pendingPresenceJobs == 0, batcher.isIdle, drainingOthersIdle() {
            draining = { }
            database.submit("presence_leave", { [instanceID] c in try PresenceStore.removeInstance(instanceID, on: c) }) { [post] _ in
                post { done() }
            }
        }
    }

    // MARK: frames

    private func handle(_ session: ChatSession, _ message: [UInt8]) {
        guard ClientFrame.isValidUTF8(message) else {
            return session.close(.invalidPayload, "message is not valid UTF-8")
        }
        let frame: ClientFrame
        do { frame = try ClientFrame.decode(message) } catch {
            session.fail(error.id, error.code, error.message)
            return
        }
        switch frame.request {
        case .auth(let token):
            if case .verifying = session.state {
                session.fail(frame.id, .rateLimited, "authentication in progress: wait for welcome")
                return
            }
            guard case .awaitingAuth = session.state else {
                session.fail(frame.id, .alreadyAuthenticated, "this connection is already authenticated: use refresh")
                return
            }
            authenticate(session, token: token, requestID: frame.id)
        case .ping:
            session.send(.ok(id: frame.id, data: ["time": .string(JSONValue.iso8601(Date()))]))
        default:
            guard case .authenticated(let claims) = session.state else {
                session.fail(frame.id, .unauthenticated, "authenticate first: {\"type\":\"auth\",\"token\":\"...\"}")
                return
            }
            handleAuthenticated(session, claims, frame)
        }
    }

    private func handleAuthenticated(_ session: ChatSession, _ claims: SessionClaims, _ frame: ClientFrame) {
        switch frame.request {
        case .refresh(let token):
            refresh(session, claims, token: token, requestID: frame.id)
        case .presenceSubscribe(let users):
            presence.subscribe(session, to: users)
            run(session, frame.id, "presence_snapshot", { c in try PresenceStore.snapshots(of: users, on: c) }) { [presence] snapshots in
                let found = Dictionary(snapshots.map { ($0.userID, $0) }, uniquingKeysWith: { a, _ in a })
                let all = users.map { found[$0] ?? PresenceSnapshot(userID: $0, isOnline: false, lastSeen: nil) }
                presence.remember(all)
                return ["users": .array(all.map { .object($0.json) })]
            }
        case .presenceUnsubscribe(let users):
            presence.unsubscribe(session, from: users)
            session.send(.ok(id: frame.id, data: [:]))
        case .usersQuery(let query):
            run(session, frame.id, "users_query", { c in try PresenceStore.query(query, on: c) }) { docs in
                let users: [JSONValue] = docs.map { d in
                    .object(["userId": .string(d["clerkId"]?.stringValue ?? ""), "username": Self.json(d["username"]),
                             "firstName": Self.json(d["firstName"]), "lastName": Self.json(d["lastName"]),
                             "imageUrl": Self.json(d["imageUrl"]), "isOnline": .bool(d["isOnline"]?.boolValue ?? false),
                             "lastSeen": Self.json(d["lastSeen"])])
                }
                let next: JSONValue = docs.count == query.limit ? .string(docs.last?["clerkId"]?.stringValue ?? "") : .null
                return ["users": .array(users), "next": next]
            }
        case .auth, .ping:
            break
        default:
            handleChat(session, claims, frame)
        }
    }

    /// Runs a database job for a request and answers it with `ok` (or an `error` frame).
    private func run<T>(_ session: ChatSession, _ id: String?, _ operation: String, _ job: @escaping (MongoConnection) throws -> T,
                        reply: @escaping (T) -> [String: JSONValue]) {
        database.submit(operation, job) { [post, logger] result in
            post {
                guard !session.isClosed else { return }
                switch result {
                case .success(let value): session.send(.ok(id: id, data: reply(value)))
                case .failure(let error):
                    let unavailable = (error as? DatabaseError)?.isUnavailable ?? false
                    if !unavailable { logger.error("\(operation) failed", metadata: ["error": "\(error)"]) }
                    session.fail(id, unavailable ? .unavailable : .internalError, unavailable ? "database unavailable, retry" : "internal error")
                }
            }
        }
    }

    static func json(_ value: BSONValue?) -> JSONValue {
        switch value {
        case .string(let s)?: return .string(s)
        case .bool(let b)?: return .bool(b)
        case .date(let d)?: return .string(JSONValue.iso8601(d))
        case .int32(let i)?: return .int(Int64(i))
        case .int64(let i)?: return .int(i)
        default: return .null
        }
    }

    // MARK: authentication and presence

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
            register(session, claims, requestID: requestID)
        }
    }

    private func register(_ session: ChatSession, _ claims: SessionClaims, requestID: String?) {
        pendingPresenceJobs += 1
        let (recordID, instanceID) = (session.recordID, self.instanceID)
        database.submit("presence_connect", { c in
            try PresenceStore.connect(connectionID: recordID, userID: claims.userID, sessionID: claims.sessionID,
                                      instanceID: instanceID, now: Date(), on: c)
        }) { [post] result in
            post { [self] in
                pendingPresenceJobs -= 1
                registered(session, claims, requestID: requestID, result: result)
            }
        }
    }

    /// Writes the connection record again (after a sweep) without touching the session's state.
    private func reregister(_ session: ChatSession, _ claims: SessionClaims) {
        let (recordID, instanceID) = (session.recordID, self.instanceID)
        database.submit("presence_connect", { c in
            try PresenceStore.connect(connectionID: recordID, userID: claims.userID, sessionID: claims.sessionID,
                                      instanceID: instanceID, now: Date(), on: c)
        }) { _ in }
    }

    private func registered(_ session: ChatSession, _ claims: SessionClaims, requestID: String?,
                            result: Result<PresenceStore.ConnectOutcome, Error>) {
        if session.isClosed {
            // Closed while its record was being written: remove the record now.
            if case .success(.online) = result { unregister(session, userID: claims.userID) }
            return
        }
        switch result {
        case .success(.online(let snapshot)):
            logger.debug("connection registered", metadata: ["connection": "\(session.recordID)", "user": "\(claims.userID)"])
            session.state = .authenticated(claims)
            sessionsByUser[claims.userID, default: []].insert(session.connection.id)
            session.send(.welcome(id: requestID, userID: claims.userID, sessionID: claims.sessionID,
                                  connectionID: session.recordID, protocolVersion: Self.protocolVersion))
            presence.observe(snapshot)
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

    private func unregister(_ session: ChatSession, userID: String) {
        unregister(recordID: session.recordID, userID: userID, at: Date())
    }

    private func unregister(recordID: String, userID: String, at: Date) {
        pendingPresenceJobs += 1
        database.submit("presence_disconnect", { c in
            try PresenceStore.disconnect(connectionID: recordID, userID: userID, at: at, on: c)
        }) { [post, logger] result in
            post { [self] in
                pendingPresenceJobs -= 1
                switch result {
                case .success(let snapshot):
                    logger.debug("connection removed", metadata: ["connection": "\(recordID)", "user": "\(userID)",
                                                                 "userOnline": "\(snapshot?.isOnline ?? false)"])
                    if let snapshot { presence.observe(snapshot) }
                case .failure(let error):
                    logger.error("could not remove connection record, will retry", metadata: ["error": "\(error)"])
                    failedDisconnects.append((recordID, userID, at))
                }
            }
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
                session.fail(requestID, .wrongUser, "the token is for another user")
                return
            }
            session.state = .authenticated(fresh)
            session.send(.ok(id: requestID, data: ["expiresAt": .string(JSONValue.iso8601(fresh.expiresAt))]))
        }
    }

    private func heartbeat(_ now: Date) {
        let retry = failedDisconnects
        failedDisconnects.removeAll()
        for item in retry { unregister(recordID: item.recordID, userID: item.userID, at: item.at) }
        let (instanceID, host, timeout) = (self.instanceID, hostName, TimeInterval(settings.instanceTimeoutSeconds))
        database.submit("presence_heartbeat", { [database, logger] c -> Bool in
            let swept = try PresenceStore.heartbeat(instanceID: instanceID, host: host, now: now, on: c)
            if swept { database.forgetRecordedSessions() }
            let sweep = try PresenceStore.sweepDeadInstances(except: instanceID, now: now, timeout: timeout, on: c)
            if sweep.sessionsKilled > 0 { logger.info("swept a dead instance: its open transactions aborted", metadata: ["sessions": "\(sweep.sessionsKilled)"]) }
            for problem in sweep.problems { logger.warning("sweep: \(problem)") }
            return swept
        }) { [post, logger] result in
            post { [self] in
                guard case .success(let recreated) = result else { return }
                if recreated && instanceRecorded {
                    // Another instance swept this one while the database was out of reach: re-register.
                    logger.warning("instance record was swept; re-registering connections")
                    for session in sessions.values { if case .authenticated(let c) = session.state { reregister(session, c) } }
                }
                instanceRecorded = true
            }
        }
    }

    // MARK: events from Clerk and other instances

    func observe(_ snapshot: PresenceSnapshot) { presence.observe(snapshot) }

    func userDeleted(clerkID: String) {
        for id in sessionsByUser[clerkID] ?? [] { sessions[id]?.close(.userDeleted, "user deleted") }
        for session in sessions.values where session.claims?.userID == clerkID { session.close(.userDeleted, "user deleted") }
    }

    func sessionEnded(sessionID: String) {
        for session in sessions.values where session.claims?.sessionID == sessionID {
            session.close(.sessionEnded, "session ended")
        }
    }

    /// Closes every socket with the "reconnect" code, waits for their presence updates and for
    /// `othersIdle` (work in flight elsewhere, such as webhooks being applied), removes this
    /// instance's record, then calls `done`.
    func drain(until othersIdle: @escaping () -> Bool = { true }, done: @escaping () -> Void) {
        drainingOthersIdle = othersIdle
        draining = done
        for session in sessions.values { session.close(.serviceRestart, "server restarting: reconnect") }
    }
}
