import ChatDomain
import ClerkAuth
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// Presence on this instance (service thread): connection records written and removed, the instance's
/// heartbeat and the sweep of dead instances, and who watches whose presence here, with coalesced
/// updates. Changes from every instance arrive through the `users` change stream (`observe`); this
/// instance's own arrive sooner from its presence jobs. Each update frame is encoded once. Records are
/// written and removed in batches (`PresenceBatcher`).
final class PresenceService {
    private let loop: ServiceLoop
    private let database: Database
    private let registry: ConnectionRegistry
    private let instanceID: String
    private let settings: ChannelSettings
    private let logger: Logger
    private let hostName = ProcessInfo.processInfo.hostName

    private var subscribers: [String: Set<UInt64>] = [:]
    private var coalescer = PresenceCoalescer()
    /// Writes and removes connection records in batches; shutdown waits for it to be idle.
    private(set) lazy var batcher = PresenceBatcher(loop: loop, database: database, instanceID: instanceID,
                                                    watched: { [unowned self] in subscribers[$0] != nil }) { [unowned self] batch, result in
        disconnected(batch, result)
    }
    /// Disconnects that could not be written (database away): retried with each heartbeat, so the
    /// user does not stay online once the database is back.
    private var failedDisconnects: [PresenceStore.DisconnectRequest] = []
    /// One heartbeat at a time: while the database is away each waits out server selection (5 s), and
    /// one per second would pile up on the workers, to be replayed when it returns.
    private var heartbeatInFlight = false
    private var nextHeartbeat = Date.distantPast
    /// Set once a heartbeat has written this instance's record: a later re-creation means it was swept.
    private var instanceRecorded = false

    init(loop: ServiceLoop, database: Database, registry: ConnectionRegistry, instanceID: String,
         settings: ChannelSettings, logger: Logger) {
        self.loop = loop
        self.database = database
        self.registry = registry
        self.instanceID = instanceID
        self.settings = settings
        self.logger = logger
    }

    var isIdle: Bool { batcher.isIdle }

    // MARK: connection records

    /// Writes the connection record of a verified session; `completion` gets the outcome (service thread).
    func register(_ session: ChatSession, _ claims: SessionClaims,
                  completion: @escaping (Result<PresenceStore.ConnectOutcome, any Error>) -> Void) {
        let recordID = session.recordID
        batcher.connect(.init(connectionID: recordID, userID: claims.userID, sessionID: claims.sessionID)) { [self] result in
            if session.isClosed {
                // Closed while its record was being written: remove the record now.
                if case .success(.online) = result { unregister(recordID: recordID, userID: claims.userID, at: Date()) }
                return
            }
            if case .success(.online(let snapshot)) = result {
                logger.debug("connection registered", metadata: ["connection": "\(recordID)", "user": "\(claims.userID)"])
                // Without a version it was not read back (nobody watched): the change stream brings it.
                if snapshot.version != nil { observe(snapshot) }
            }
            completion(result)
        }
    }

    /// Set when shutdown closes every socket: their users were last seen then, and sharing one time
    /// lets their offline writes go as one multi-document update per batch.
    var closingAllSince: Date?

    /// The socket closed: forget its subscriptions and remove its record.
    func closed(_ session: ChatSession, previous: ChatSession.State) {
        unsubscribe(session, from: Array(session.presenceSubscriptions))
        if case .authenticated(let claims) = previous {
            unregister(recordID: session.recordID, userID: claims.userID, at: closingAllSince ?? Date())
        }
        // .registering: `register`'s completion sees .closed and unregisters.
    }

    private func unregister(recordID: String, userID: String, at: Date) {
        batcher.disconnect(.init(connectionID: recordID, userID: userID, at: at))
    }

    private func disconnected(_ batch: [PresenceStore.DisconnectRequest], _ result: Result<[PresenceSnapshot?], any Error>) {
        switch result {
        case .success(let snapshots):
            logger.debug("connections removed", metadata: ["count": "\(batch.count)"])
            // One snapshot per user: every request of a user carries the same read.
            var seen = Set<String>()
            for case let snapshot? in snapshots where seen.insert(snapshot.userID).inserted { observe(snapshot) }
        case .failure(let error):
            logger.error("could not remove connection records, will retry", metadata: ["error": "\(error)", "count": "\(batch.count)"])
            failedDisconnects += batch
        }
    }

    // MARK: the instance

    /// Called every tick: the heartbeat when due, then the coalesced updates.
    func tick(now: Date, draining: Bool) {
        if now >= nextHeartbeat && !draining && !heartbeatInFlight {
            nextHeartbeat = now.addingTimeInterval(TimeInterval(settings.heartbeatSeconds))
            heartbeat(now)
        }
        flush()
    }

    private func heartbeat(_ now: Date) {
        let retry = failedDisconnects
        failedDisconnects.removeAll()
        for request in retry { batcher.disconnect(request) }
        let (instanceID, host, timeout) = (self.instanceID, hostName, TimeInterval(settings.instanceTimeoutSeconds))
        heartbeatInFlight = true
        database.submit("presence_heartbeat", on: loop, { [database, logger] c -> Bool in
            let swept = try PresenceStore.heartbeat(instanceID: instanceID, host: host, now: now, on: c)
            if swept { database.forgetRecordedSessions() }
            let sweep = try PresenceStore.sweepDeadInstances(except: instanceID, now: now, timeout: timeout, on: c)
            if sweep.sessionsKilled > 0 { logger.info("swept a dead instance: its open transactions aborted", metadata: ["sessions": "\(sweep.sessionsKilled)"]) }
            for problem in sweep.problems { logger.warning("sweep: \(problem)") }
            return swept
        }) { [self] result in
            heartbeatInFlight = false
            guard case .success(let recreated) = result else { return }
            if recreated && instanceRecorded {
                // Another instance swept this one while the database was out of reach: re-register.
                logger.warning("instance record was swept; re-registering connections")
                for session in registry.sessions.values { if case .authenticated(let c) = session.state { reregister(session, c) } }
            }
            instanceRecorded = true
        }
    }

    /// Writes the connection record again (after a sweep) without touching the session's state.
    private func reregister(_ session: ChatSession, _ claims: SessionClaims) {
        batcher.connect(.init(connectionID: session.recordID, userID: claims.userID, sessionID: claims.sessionID)) { [self] result in
            // Closed while queued: its disconnect may have run first, so the record written now is removed again.
            if session.isClosed, case .success(.online) = result { unregister(recordID: session.recordID, userID: claims.userID, at: Date()) }
        }
    }

    /// Removes this instance's record (shutdown, once its connections are gone), then calls `done`.
    func leave(_ done: @escaping () -> Void) {
        database.submit("presence_leave", on: loop, { [instanceID] c in try PresenceStore.removeInstance(instanceID, on: c) }) { _ in done() }
    }

    // MARK: subscriptions

    /// `presence.subscribe`: watch `users`; the reply is their current state.
    func subscribe(_ session: ChatSession, to users: [String],
                   reply: @escaping (Result<[PresenceSnapshot], any Error>) -> Void) {
        for user in users {
            subscribers[user, default: []].insert(session.connection.id)
            session.presenceSubscriptions.insert(user)
        }
        database.submit("presence_snapshot", on: loop, { c in try PresenceStore.snapshots(of: users, on: c) }) { [self] result in
            reply(result.map { snapshots in
                let found = Dictionary(snapshots.map { ($0.userID, $0) }, uniquingKeysWith: { a, _ in a })
                let all = users.map { found[$0] ?? PresenceSnapshot(userID: $0, isOnline: false, lastSeen: nil) }
                for s in all where subscribers[s.userID] != nil { coalescer.remember(s) }
                return all
            })
        }
    }

    func unsubscribe(_ session: ChatSession, from users: some Sequence<String>) {
        for user in users {
            session.presenceSubscriptions.remove(user)
            subscribers[user]?.remove(session.connection.id)
            if subscribers[user]?.isEmpty == true {
                subscribers[user] = nil
                coalescer.forget(user)
            }
        }
    }

    /// A user's presence changed (here or on another instance).
    func observe(_ snapshot: PresenceSnapshot) {
        guard subscribers[snapshot.userID] != nil else { return }
        coalescer.observe(snapshot)
    }

    private func flush() {
        for snapshot in coalescer.flush() {
            guard let watchers = subscribers[snapshot.userID] else { continue }
            registry.send(OutboundFrame(ServerFrame.presence(snapshot).encoded()), toConnections: watchers)
        }
    }
}
