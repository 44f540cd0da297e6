import ChatDomain
import Foundation
import Logging

/// Presence in MongoDB: a `connections` record per open socket (carrying its instance), an
/// `instances` record per live server with a heartbeat, and `isOnline` / `lastSeen` on the user,
/// derived from the records so that several instances on one database count as one.
public enum PresenceStore {
    public static let connections = "connections"
    public static let instances = "instances"

    public static let revokedSessions = "revoked_sessions"
    /// Counts every write to a user's `isOnline` / `lastSeen`, to order reads of them.
    public static let presenceVersion = "presenceVersion"

    public enum ConnectOutcome: Equatable, Sendable {
        case online(PresenceSnapshot)
        case userDeleted
        case sessionEnded
    }

    // MARK: instances

    /// Returns true when the record had to be created again: another instance swept this one (its
    /// heartbeats could not reach the database for too long), so its connections must be re-registered.
    @discardableResult
    public static func heartbeat(instanceID: String, host: String, now: Date, on c: MongoConnection) throws -> Bool {
        try c.collection(instances).updateOne(["_id": .string(instanceID)], [
            "$set": ["heartbeatAt": .date(now)],
            "$setOnInsert": ["startedAt": .date(now), "host": .string(host)],
        ], upsert: true).upserted
    }

    /// Marks offline the users of every instance whose heartbeat stopped `timeout` ago, with `lastSeen`
    /// at its last heartbeat, then removes its records. Safe to run on every instance at once, and to
    /// repeat after a crash halfway: each step is idempotent.
    public struct Sweep: Sendable {
        public var users: [String] = []
        /// Sessions of dead instances killed (their open transactions aborted).
        public var sessionsKilled = 0
        public var problems: [String] = []
    }

    @discardableResult
    public static func sweepDeadInstances(except me: String, now: Date, timeout: TimeInterval, on c: MongoConnection) throws -> Sweep {
        let dead = try c.collection(instances).find([
            "_id": ["$ne": .string(me)],
            "heartbeatAt": ["$lt": .date(now.addingTimeInterval(-timeout))],
        ])
        var sweep = Sweep()
        for instance in dead {
            guard let id = instance["_id"]?.stringValue else { continue }
            // First abort its open transactions (a kill -9 in the middle of a message batch): until
            // then they block every writer of the documents they touched. Best effort: without the
            // privilege, or on a database without the command, they end with the server's
            // transaction lifetime instead.
            if let sessions = instance["sessions"]?.arrayValue, !sessions.isEmpty {
                do {
                    try c.killSessions(sessions)
                    sweep.sessionsKilled += sessions.count
                } catch {
                    sweep.problems.append("killSessions for instance \(id): \(error)")
                }
            }
            let heartbeat = instance["heartbeatAt"]?.dateValue ?? now
            let lastSeen = PresenceRules.lastSeen(forDeadInstanceHeartbeat: heartbeat, now: now)
            let records = try c.collection(connections).find(["instanceId": .string(id)], projection: ["userId": .int32(1)])
            let users = Set(records.compactMap { $0["userId"]?.stringValue })
            for user in users.sorted() {
                try reconcile(userID: user, lastSeen: lastSeen, excludingInstance: id, on: c)
            }
            try c.collection(connections).deleteMany(["instanceId": .string(id)])
            try c.collection(instances).deleteOne(["_id": .string(id)])
            sweep.users += users
        }
        return sweep
    }

    public static func removeInstance(_ instanceID: String, on c: MongoConnection) throws {
        try c.collection(instances).deleteOne(["_id": .string(instanceID)])
    }

    // MARK: connections

    /// Records the connection, then marks the user online (creating a minimal user when the
    /// `user.created` webhook has not arrived yet; it fills the profile in later). A user already
    /// online through another socket is not written at all: the record is what keeps them online, and
    /// a disconnect racing this one recounts the records after going offline (`reconcile`), so the
    /// read below, made after the record exists, cannot leave them offline.
    public static func connect(connectionID: String, userID: String, sessionID: String?, instanceID: String,
                               now: Date, on c: MongoConnection) throws -> ConnectOutcome {
        if let sessionID {
            let revoked = try c.collection(revokedSessions).findOne(["_id": .string(sessionID)])
            if revoked != nil { return .sessionEnded }
        }
        // An upsert, so that re-registering after a sweep is the same operation.
        try c.collection(connections).updateOne(["_id": .string(connectionID)], ["$setOnInsert": [
            "userId": .string(userID), "instanceId": .string(instanceID),
            "sessionId": .string(sessionID), "connectedAt": .date(now),
        ]], upsert: true)
        let users = c.collection(UserStore.users)
        let current = try users.findOne(["clerkId": .string(userID)], projection: snapshotFields.appending([("deleted", .int32(1))]))
        if current?["deleted"]?.boolValue == true {
            try c.collection(connections).deleteOne(["_id": .string(connectionID)])
            return .userDeleted
        }
        if let current, current["isOnline"]?.boolValue == true, let snapshot = snapshot(current) {
            return .online(snapshot)
        }
        let update: BSONDocument = [
            "$set": ["isOnline": .bool(true)],
            "$inc": [presenceVersion: .int64(1)],
            "$setOnInsert": .document(UserStore.profileFields(UserProfile(clerkID: userID))
                .appending([("clerkId", .string(userID)), ("lastSeen", .date(now)), ("createdAt", .date(now)),
                            ("updatedAt", .date(now)), ("deleted", .bool(false))])),
        ]
        var updated: BSONDocument?
        do {
            updated = try users.findOneAndUpdate(["clerkId": .string(userID)], update, upsert: true)
        } catch {
            // Two first connections raced to create the user: the other one created it.
            guard case .duplicateKey = error else { throw error }
            updated = try users.findOneAndUpdate(["clerkId": .string(userID)], update, upsert: true)
        }
        return .online(updated.flatMap(snapshot) ?? PresenceSnapshot(userID: userID, isOnline: true, lastSeen: now))
    }

    /// Removes the connection record; the user goes offline, with `lastSeen` = `at`, when it was the last.
    public static func disconnect(connectionID: String, userID: String, at: Date, on c: MongoConnection) throws -> PresenceSnapshot? {
        try c.collection(connections).deleteOne(["_id": .string(connectionID)])
        try reconcile(userID: userID, lastSeen: at, excludingInstance: nil, on: c)
        return try snapshots(of: [userID], on: c).first
    }

    /// Records that a Clerk session ended, so that every instance closes its sockets (through the
    /// change stream) and a token of that session cannot connect again.
    public static func revokeSession(_ sessionID: String, userID: String?, now: Date, on c: MongoConnection) throws {
        try c.collection(revokedSessions).updateOne(["_id": .string(sessionID)], ["$setOnInsert": [
            "userId": .string(userID), "at": .date(now), "expireAt": .date(now.addingTimeInterval(2 * 24 * 3600)),
        ]], upsert: true)
    }

    /// Sets `isOnline` from the connection records. The recount after going offline repairs a race with
    /// a connect on another instance (its record was written before it set the user online).
    static func reconcile(userID: String, lastSeen: Date, excludingInstance: String?, on c: MongoConnection) throws {
        var filter: BSONDocument = ["userId": .string(userID)]
        if let excludingInstance { filter["instanceId"] = ["$ne": .string(excludingInstance)] }
        let records = c.collection(connections)
        let byUser: BSONDocument = ["userId": .int32(1)]
        guard try records.count(filter, hint: byUser) == 0 else { return }
        let users = c.collection(UserStore.users)
        // By clerkId alone (an updated user who was already offline just gets a later lastSeen):
        // a second field would make the embedded database scan every user.
        try users.updateOne(["clerkId": .string(userID)], [
            "$set": ["isOnline": .bool(false)],
            "$max": ["lastSeen": .date(lastSeen)],
            "$inc": [presenceVersion: .int64(1)],
        ])
        if try records.count(filter, hint: byUser) > 0 {
            try users.updateOne(["clerkId": .string(userID)], ["$set": ["isOnline": .bool(true)], "$inc": [presenceVersion: .int64(1)]])
        }
    }

    public static func snapshots(of userIDs: [String], on c: MongoConnection) throws -> [PresenceSnapshot] {
        let docs = try c.collection(UserStore.users).find(["clerkId": ["$in": .array(userIDs.map { .string($0) })]],
                                                          projection: snapshotFields)
        return docs.compactMap(snapshot)
    }

    /// What `snapshot` reads from a user document.
    static let snapshotFields: BSONDocument = ["clerkId": .int32(1), "isOnline": .int32(1), "lastSeen": .int32(1), presenceVersion: .int32(1)]

    public static func snapshot(_ doc: BSONDocument) -> PresenceSnapshot? {
        guard let id = doc["clerkId"]?.stringValue else { return nil }
        return PresenceSnapshot(userID: id, isOnline: doc["isOnline"]?.boolValue ?? false, lastSeen: doc["lastSeen"]?.dateValue,
                                version: doc[presenceVersion]?.int64Value)
    }

    // MARK: change streams

    /// Presence changes (and deletions) of users written by any instance or webhook.
    public static func userChanges(database: Database, logger: Logger,
                                   _ handler: @escaping @Sendable (PresenceSnapshot, _ deleted: Bool) -> Void) -> ChangeFeed {
        ChangeFeed(database: database, collection: UserStore.users, pipeline: [
            ["$match": ["operationType": ["$in": .array([.string("insert"), .string("update"), .string("replace")])]]],
        ], logger: logger) { change in
            guard let doc = change["fullDocument"]?.documentValue, let snapshot = snapshot(doc) else { return }
            handler(snapshot, doc["deleted"]?.boolValue ?? false)
        }
    }

    /// Clerk sessions ended (their id), as webhooks record them on any instance.
    public static func endedSessions(database: Database, logger: Logger, _ handler: @escaping @Sendable (String) -> Void) -> ChangeFeed {
        ChangeFeed(database: database, collection: revokedSessions, pipeline: [
            ["$match": ["operationType": .string("insert")]],
        ], logger: logger) { change in
            guard let id = change["documentKey"]?.documentValue?["_id"]?.stringValue else { return }
            handler(id)
        }
    }
}
