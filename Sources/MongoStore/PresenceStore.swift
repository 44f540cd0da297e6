import ChatDomain
import Foundation

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
            try reconcile(Dictionary(uniqueKeysWithValues: users.map { ($0, lastSeen) }), excludingInstance: id, on: c)
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

    /// One socket to record: its record id, user and Clerk session.
    public struct ConnectRequest: Sendable, Equatable {
        public var connectionID: String
        public var userID: String
        public var sessionID: String?
        public init(connectionID: String, userID: String, sessionID: String?) {
            self.connectionID = connectionID
            self.userID = userID
            self.sessionID = sessionID
        }
    }

    /// One socket gone: its record, user, and when (its user's `lastSeen` when it was the last).
    public struct DisconnectRequest: Sendable, Equatable {
        public var connectionID: String
        public var userID: String
        public var at: Date
        public init(connectionID: String, userID: String, at: Date) {
            self.connectionID = connectionID
            self.userID = userID
            self.at = at
        }
    }

    /// What a batch did: an outcome per request, in order, and the database round trips it took.
    public struct Batch<Outcome: Sendable>: Sendable {
        public var outcomes: [Outcome]
        public var operations: Int
    }

    /// Records many connections in a few round trips (each find one per `inChunk` values): the revoked sessions
    /// among them (one find), their records (one insertMany; a record already there is a
    /// re-registration), their users (one find), the records of deleted users removed again (one
    /// delete), and the users not yet online set online (one bulk write, creating a minimal user when
    /// the `user.created` webhook has not arrived yet; it fills the profile in later), those in
    /// `readBack` read back (one find; nil: all). A user already online through another socket is
    /// not written at all: the record is what keeps them online, and a disconnect racing this one
    /// recounts the records after going offline (`reconcile`), so the read, made after the records
    /// exist, cannot leave them offline. A user set online and not read back gets a snapshot without
    /// a version (its change arrives through the change stream).
    ///
    /// No `hint` on these queries: the embedded database answers a single-field `$in` with index
    /// lookups, but walks the whole index when given a hint.
    public static func connect(_ batch: [ConnectRequest], instanceID: String, now: Date, readBack: Set<String>? = nil,
                               on c: MongoConnection) throws -> Batch<ConnectOutcome> {
        var outcomes = [ConnectOutcome?](repeating: nil, count: batch.count)
        var operations = 0
        let sessions = Array(Set(batch.compactMap(\.sessionID))).sorted()
        var revoked: Set<String> = []
        if !sessions.isEmpty {
            // One `$in` for all: only the documents found are checked against the list, and revoked
            // sessions are few (unlike the users and records below, found for every value).
            operations += 1
            revoked = Set(try c.collection(revokedSessions).find(["_id": ["$in": .array(sessions.map { .string($0) })]],
                                                                 projection: ["_id": .int32(1)]).compactMap { $0["_id"]?.stringValue })
        }
        var live: [Int] = []
        for (i, request) in batch.enumerated() {
            if let session = request.sessionID, revoked.contains(session) { outcomes[i] = .sessionEnded } else { live.append(i) }
        }
        guard !live.isEmpty else { return Batch(outcomes: outcomes.map { $0! }, operations: operations) }

        let records = c.collection(connections)
        operations += 1
        try records.insertManySkippingDuplicates(live.map { i in
            let r = batch[i]
            return ["_id": .string(r.connectionID), "userId": .string(r.userID), "instanceId": .string(instanceID),
                    "sessionId": .string(r.sessionID), "connectedAt": .date(now)]
        })
        let userIDs = unique(live.map { batch[$0].userID })
        let users = c.collection(UserStore.users)
        let found = try findIn(users, "clerkId", userIDs, projection: snapshotFields.appending([("deleted", .int32(1))]),
                               operations: &operations)
        let current = Dictionary(found.compactMap { doc in doc["clerkId"]?.stringValue.map { ($0, doc) } },
                                 uniquingKeysWith: { a, _ in a })
        let deleted = Set(userIDs.filter { current[$0]?["deleted"]?.boolValue == true })
        if !deleted.isEmpty {
            let refused = live.filter { deleted.contains(batch[$0].userID) }
            operations += 1
            try records.deleteMany(["_id": ["$in": .array(refused.map { .string(batch[$0].connectionID) })]])
            for i in refused { outcomes[i] = .userDeleted }
        }
        var snapshots: [String: PresenceSnapshot] = [:]
        var offline: [String] = [], missing: [String] = []
        for user in userIDs where !deleted.contains(user) {
            if let doc = current[user], doc["isOnline"]?.boolValue == true, let snapshot = snapshot(doc) {
                snapshots[user] = snapshot
            } else if current[user] == nil {
                missing.append(user)
            } else {
                offline.append(user)
            }
        }
        let online: BSONDocument = ["$set": ["isOnline": .bool(true)], "$inc": [presenceVersion: .int64(1)]]
        if !offline.isEmpty {
            // The users that exist: one round trip for all of them (the embedded database applies one
            // multi-document update at a fraction of the cost of as many single ones).
            operations += 1
            try users.bulkUpdate(inChunks(offline).map { (byClerkID($0), online, true) })
        }
        if !missing.isEmpty {
            // Only the users that do not exist yet cost an upsert each.
            let updates = missing.map { user -> (filter: BSONDocument, update: BSONDocument) in
                (["clerkId": .string(user)], [
                    "$set": ["isOnline": .bool(true)],
                    "$inc": [presenceVersion: .int64(1)],
                    "$setOnInsert": .document(UserStore.profileFields(UserProfile(clerkID: user))
                        .appending([("clerkId", .string(user)), ("lastSeen", .date(now)), ("createdAt", .date(now)),
                                    ("updatedAt", .date(now)), ("deleted", .bool(false))])),
                ])
            }
            operations += 1
            do {
                try users.bulkUpdateOne(updates, upsert: true)
            } catch {
                guard case .duplicateKey = error else { throw error }
                // Another instance created one of these users meanwhile: now it exists, the upsert updates it.
                // Repeating the writes that did succeed only counts `presenceVersion` once more.
                operations += 1
                try users.bulkUpdateOne(updates, upsert: true)
            }
        }
        let written = offline + missing
        if !written.isEmpty {
            let reread = readBack.map { watched in written.filter(watched.contains) } ?? written
            for s in try Self.snapshots(of: reread, operations: &operations, on: c) { snapshots[s.userID] = s }
        }
        for i in live where outcomes[i] == nil {
            let user = batch[i].userID
            outcomes[i] = .online(snapshots[user] ?? PresenceSnapshot(userID: user, isOnline: true, lastSeen: now))
        }
        return Batch(outcomes: outcomes.map { $0! }, operations: operations)
    }

    /// One connection (`connect` with a batch of one).
    public static func connect(connectionID: String, userID: String, sessionID: String?, instanceID: String,
                               now: Date, on c: MongoConnection) throws -> ConnectOutcome {
        try connect([ConnectRequest(connectionID: connectionID, userID: userID, sessionID: sessionID)],
                    instanceID: instanceID, now: now, on: c).outcomes[0]
    }

    /// Removes many connection records (one delete); their users go offline, with `lastSeen` = the
    /// latest `at` among their requests, when no record of theirs is left (`reconcile`: two to four
    /// round trips for the whole batch). The outcome is each request's user's presence afterwards (one
    /// find), for the users in `readBack` (nil: all; the others' changes arrive through the change stream).
    public static func disconnect(_ batch: [DisconnectRequest], readBack: Set<String>? = nil,
                                  on c: MongoConnection) throws -> Batch<PresenceSnapshot?> {
        guard !batch.isEmpty else { return Batch(outcomes: [], operations: 0) }
        var operations = 1
        try c.collection(connections).bulkDeleteMany(inChunks(batch.map(\.connectionID)).map { ["_id": ["$in": .array($0.map { .string($0) })]] })
        var lastSeen: [String: Date] = [:]
        for r in batch { lastSeen[r.userID] = max(lastSeen[r.userID] ?? r.at, r.at) }
        operations += try reconcile(lastSeen, excludingInstance: nil, on: c)
        let reread = unique(batch.map(\.userID)).filter { readBack?.contains($0) ?? true }
        var found: [String: PresenceSnapshot] = [:]
        if !reread.isEmpty {
            found = Dictionary(try snapshots(of: reread, operations: &operations, on: c).map { ($0.userID, $0) }, uniquingKeysWith: { a, _ in a })
        }
        return Batch(outcomes: batch.map { found[$0.userID] }, operations: operations)
    }

    /// One connection (`disconnect` with a batch of one).
    public static func disconnect(connectionID: String, userID: String, at: Date, on c: MongoConnection) throws -> PresenceSnapshot? {
        try disconnect([DisconnectRequest(connectionID: connectionID, userID: userID, at: at)], on: c).outcomes[0]
    }

    /// Records that a Clerk session ended, so that every instance closes its sockets (through the
    /// change stream) and a token of that session cannot connect again.
    public static func revokeSession(_ sessionID: String, userID: String?, now: Date, on c: MongoConnection) throws {
        try c.collection(revokedSessions).updateOne(["_id": .string(sessionID)], ["$setOnInsert": [
            "userId": .string(userID), "at": .date(now), "expireAt": .date(now.addingTimeInterval(2 * 24 * 3600)),
        ]], upsert: true)
    }

    /// Sets `isOnline` from the connection records for many users at once, each offline one with its
    /// `lastSeen`. The recount after going offline repairs a race with a connect on another instance
    /// (its record was written before it set the user online). Returns the round trips taken (1-4).
    @discardableResult
    static func reconcile(_ lastSeen: [String: Date], excludingInstance: String?, on c: MongoConnection) throws -> Int {
        guard !lastSeen.isEmpty else { return 0 }
        let records = c.collection(connections)
        // By userId alone, the excluded instance's records dropped here: the embedded database looks a
        // single-field `$in` up in the index, and scans for a second field.
        var operations = 0
        func connected(_ users: [String]) throws -> Set<String> {
            let found = try findIn(records, "userId", users, projection: ["_id": .int32(0), "userId": .int32(1), "instanceId": .int32(1)],
                                   operations: &operations)
            return Set(found.filter { excludingInstance == nil || $0["instanceId"]?.stringValue != excludingInstance }
                .compactMap { $0["userId"]?.stringValue })
        }
        let stillConnected = try connected(lastSeen.keys.sorted())
        let leaving = lastSeen.keys.sorted().filter { !stillConnected.contains($0) }
        guard !leaving.isEmpty else { return operations }
        let users = c.collection(UserStore.users)
        // By clerkId alone (an updated user who was already offline just gets a later lastSeen):
        // a second field would make the embedded database scan every user. The users sharing a
        // lastSeen (every socket closed at once by a shutdown) get one multi-document update.
        operations += 1
        let byTime = Dictionary(grouping: leaving) { lastSeen[$0]! }.sorted { $0.key < $1.key }
        var updates: [(filter: BSONDocument, update: BSONDocument, many: Bool)] = []
        for (at, group) in byTime {
            let update: BSONDocument = [
                "$set": ["isOnline": .bool(false)],
                "$max": ["lastSeen": .date(at)],
                "$inc": [presenceVersion: .int64(1)],
            ]
            if group.count == 1 {
                updates.append((["clerkId": .string(group[0])], update, false))
            } else {
                updates += inChunks(group).map { (byClerkID($0), update, true) }
            }
        }
        try users.bulkUpdate(updates)
        let back = try connected(leaving)
        if !back.isEmpty {
            operations += 1
            try users.bulkUpdate(inChunks(back.sorted()).map {
                (byClerkID($0), ["$set": ["isOnline": .bool(true)], "$inc": [presenceVersion: .int64(1)]], true)
            })
        }
        return operations
    }

    private static func byClerkID(_ users: some Collection<String>) -> BSONDocument {
        ["clerkId": ["$in": .array(users.map { .string($0) })]]
    }

    /// The most values one `$in` carries. The embedded database checks every candidate document
    /// against the whole list, so a query costs about the square of its length: measured per
    /// element, finds 0.12-0.15 ms up to 50 values, 0.2 ms at 100, 0.43 ms at 250; updates 0.5, 0.7
    /// and 1.3 ms. Finds go in several round trips, updates and deletes as statements of one bulk write.
    static let inChunk = 50

    static func inChunks<T>(_ values: [T]) -> [ArraySlice<T>] {
        stride(from: 0, to: values.count, by: inChunk).map { values[$0..<min($0 + inChunk, values.count)] }
    }

    /// The documents whose `field` is one of `values`: one find per `inChunk` values, each counted in `operations`.
    private static func findIn(_ collection: MongoCollection, _ field: String, _ values: [String], projection: BSONDocument,
                               operations: inout Int) throws -> [BSONDocument] {
        var found: [BSONDocument] = []
        for chunk in inChunks(values) {
            operations += 1
            found += try collection.find([field: ["$in": .array(chunk.map { .string($0) })]], projection: projection)
        }
        return found
    }

    /// `values` without repeats, in their first order.
    private static func unique(_ values: [String]) -> [String] {
        var seen = Set<String>()
        return values.filter { seen.insert($0).inserted }
    }

    public static func snapshots(of userIDs: [String], on c: MongoConnection) throws -> [PresenceSnapshot] {
        var operations = 0
        return try snapshots(of: userIDs, operations: &operations, on: c)
    }

    static func snapshots(of userIDs: [String], operations: inout Int, on c: MongoConnection) throws -> [PresenceSnapshot] {
        try findIn(c.collection(UserStore.users), "clerkId", userIDs, projection: snapshotFields, operations: &operations).compactMap(snapshot)
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
    public static func userChanges(_ handler: @escaping @Sendable (PresenceSnapshot, _ deleted: Bool) -> Void) -> ChangeFeed.Route {
        ChangeFeed.Route(collection: UserStore.users,
                         match: ["operationType": ["$in": .array([.string("insert"), .string("update"), .string("replace")])]]) { change in
            guard let doc = change["fullDocument"]?.documentValue, let snapshot = snapshot(doc) else { return }
            handler(snapshot, doc["deleted"]?.boolValue ?? false)
        }
    }

    /// Clerk sessions ended (their id), as webhooks record them on any instance.
    public static func endedSessions(_ handler: @escaping @Sendable (String) -> Void) -> ChangeFeed.Route {
        ChangeFeed.Route(collection: revokedSessions, match: ["operationType": .string("insert")]) { change in
            guard let id = change["documentKey"]?.documentValue?["_id"]?.stringValue else { return }
            handler(id)
        }
    }
}
