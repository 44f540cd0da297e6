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
