import ChatDomain
import Foundation

/// How a webhook delivery ended, as Svix and the metrics see it.
public enum WebhookOutcome: String, Sendable {
    case applied, duplicate, superseded, ignored
}

/// The `users` collection as the Clerk webhooks write it, with the `webhook_events` record of every
/// delivery applied (its `svix-id`), written in the same transaction as the effect.
public enum UserStore {
    public static let users = "users"
    /// The unique clerkId index, named for reads with other fields (see `MongoCollection.find`).
    public static let byClerkID: BSONDocument = ["clerkId": .int32(1)]
    public static let webhookEvents = "webhook_events"
    /// Svix retries for about 28 hours; replays from the dashboard can come later.
    public static let webhookRetention: TimeInterval = 7 * 24 * 3600

    public static func apply(_ event: ClerkEvent, deliveryID: String, now: Date, on connection: MongoConnection) throws -> WebhookOutcome {
        try connection.withTransaction { tx in
            let deliveries = tx.collection(webhookEvents)
            if try deliveries.findOne(["_id": .string(deliveryID)], projection: ["_id": .int32(1)]) != nil {
                return .duplicate
            }
            let clerkID: String
            switch event {
            case .userUpserted(_, let profile, _): clerkID = profile.clerkID
            case .userDeleted(let id, _): clerkID = id
            default: return .ignored
            }
            let users = tx.collection(Self.users)
            let stored = try users.findOne(["clerkId": .string(clerkID)],
                                           projection: ["clerkUpdatedAt": .int32(1), "deleted": .int32(1)])
            let version = stored.map {
                StoredUserVersion(clerkUpdatedAt: $0["clerkUpdatedAt"]?.int64Value, deleted: $0["deleted"]?.boolValue ?? false)
            }
            let decision = UserSync.decide(event, stored: version)
            let outcome: WebhookOutcome
            switch decision {
            case .applyProfile(let profile, let updatedAt):
                try users.updateOne(["clerkId": .string(profile.clerkID)], [
                    "$set": .document(profileFields(profile).appending([
                        ("clerkUpdatedAt", .int64(updatedAt)), ("updatedAt", .date(now)),
                    ])),
                    "$setOnInsert": .document(newUserFields(clerkID: profile.clerkID, now: now).appending([("deleted", .bool(false))])),
                ], upsert: true)
                outcome = .applied
            case .tombstone(let id, let deletedAt):
                try users.updateOne(["clerkId": .string(id)], [
                    "$set": .document(profileFields(UserProfile(clerkID: id)).appending([
                        ("deleted", .bool(true)), ("deletedAt", .date(millis: deletedAt)), ("updatedAt", .date(now)),
                    ])),
                    "$setOnInsert": .document(newUserFields(clerkID: id, now: now)),
                ], upsert: true)
                outcome = .applied
            case .superseded:
                outcome = .superseded
            case .notAUserEvent:
                return .ignored
            }
            try deliveries.insertOne([
                "_id": .string(deliveryID), "type": .string(event.type), "clerkId": .string(clerkID),
                "outcome": .string(outcome.rawValue), "receivedAt": .date(now),
                "expireAt": .date(now.addingTimeInterval(webhookRetention)),
            ])
            return outcome
        }
    }

    /// The profile as stored: every field present, null when Clerk has none.
    static func profileFields(_ p: UserProfile) -> BSONDocument {
        ["username": .string(p.username), "email": .string(p.email), "firstName": .string(p.firstName),
         "lastName": .string(p.lastName), "imageUrl": .string(p.imageURL)]
    }

    /// Fields a user gets when the first write for that id creates the document.
    static func newUserFields(clerkID: String, now: Date) -> BSONDocument {
        ["clerkId": .string(clerkID), "isOnline": .bool(false), "lastSeen": .date(now), "createdAt": .date(now)]
    }

    public static func find(clerkID: String, on connection: MongoConnection) throws -> BSONDocument? {
        try connection.collection(users).findOne(["clerkId": .string(clerkID)])
    }
}

extension BSONDocument {
    func appending(_ more: [(String, BSONValue)]) -> BSONDocument { BSONDocument(fields + more) }
}

/// Lookups the chat stores make on `users`.
extension UserStore {
    /// Fails with `notFound` naming the first id that is not a live user.
    static func requireExisting(_ ids: [String], on c: MongoConnection) throws {
        guard !ids.isEmpty else { return }
        let found = try c.collection(users).find(["clerkId": ["$in": .array(ids.map { .string($0) })], "deleted": ["$ne": .bool(true)]],
                                                 projection: ["clerkId": .int32(1)], hint: byClerkID)
        let known = Set(found.compactMap { $0["clerkId"]?.stringValue })
        if let missing = ids.first(where: { !known.contains($0) }) { throw ChatStore.ChatError.notFound("no user \(missing)") }
    }

    /// Marks messages whose sender was deleted in Clerk ("deleted user").
    static func markingDeletedSenders(_ list: [ChatMessage], on c: MongoConnection) throws -> [ChatMessage] {
        let senders = Set(list.map(\.senderID))
        guard !senders.isEmpty else { return list }
        let deleted = try c.collection(users).find(["clerkId": ["$in": .array(senders.map { .string($0) })], "deleted": .bool(true)],
                                                   projection: ["clerkId": .int32(1)], hint: byClerkID)
        let gone = Set(deleted.compactMap { $0["clerkId"]?.stringValue })
        return gone.isEmpty ? list : list.map { var m = $0; m.senderDeleted = gone.contains(m.senderID); return m }
    }
}

/// The user directory (`users.query`).
extension UserStore {
    /// A page of users for `users.query`: by id, optionally only online ones or matching a search.
    public static func directory(_ q: UsersQuery, on c: MongoConnection) throws -> [DirectoryEntry] {
        var filter: BSONDocument = ["deleted": ["$ne": .bool(true)]]
        if q.onlineOnly { filter["isOnline"] = .bool(true) }
        if let after = q.after { filter["clerkId"] = ["$gt": .string(after)] }
        if let search = q.search, !search.isEmpty {
            // Names by substring; an email only as the whole address, so that nobody can probe
            // addresses a few characters at a time.
            let pattern = NSRegularExpression.escapedPattern(for: search)
            var any: [BSONValue] = ["username", "firstName", "lastName"].map {
                .document(BSONDocument([($0, ["$regex": .string(pattern), "$options": .string("i")])]))
            }
            if UserDirectory.couldBeEmail(search) {
                any.append(["email": ["$regex": .string("^" + pattern + "$"), "$options": .string("i")]])
            }
            filter["$or"] = .array(any)
        }
        let docs = try c.collection(users).find(filter, sort: ["clerkId": .int32(1)], limit: q.limit, projection: [
            "_id": .int32(0), "clerkId": .int32(1), "username": .int32(1), "firstName": .int32(1), "lastName": .int32(1),
            "imageUrl": .int32(1), "isOnline": .int32(1), "lastSeen": .int32(1),
        ], hint: byClerkID)
        return docs.map { d in
            DirectoryEntry(userID: d["clerkId"]?.stringValue ?? "", username: d["username"]?.stringValue,
                           firstName: d["firstName"]?.stringValue, lastName: d["lastName"]?.stringValue,
                           imageURL: d["imageUrl"]?.stringValue, isOnline: d["isOnline"]?.boolValue ?? false,
                           lastSeen: d["lastSeen"]?.dateValue)
        }
    }
}
