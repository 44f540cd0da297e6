import Foundation

/// A Clerk webhook event, decoded from the verified body into what this backend acts on.
public enum ClerkEvent: Equatable, Sendable {
    /// `user.created` / `user.updated`: the full profile and Clerk's `updated_at` (ms), used for ordering.
    case userUpserted(type: String, profile: UserProfile, clerkUpdatedAt: Int64)
    /// `user.deleted`, ordered by the envelope `timestamp` (ms): the data carries no `updated_at`.
    case userDeleted(clerkID: String, at: Int64)
    /// `session.ended|removed|revoked`: the realtime layer closes that session's sockets.
    case sessionEnded(type: String, sessionID: String, userID: String?)
    /// Any other type: acknowledged, nothing stored.
    case ignored(type: String)

    public var type: String {
        switch self {
        case .userUpserted(let type, _, _), .sessionEnded(let type, _, _), .ignored(let type): return type
        case .userDeleted: return "user.deleted"
        }
    }
}

public enum ClerkEventError: Error, Equatable, CustomStringConvertible {
    case notJSON
    case notAnEvent(String)

    public var description: String {
        switch self {
        case .notJSON: return "body is not a JSON object"
        case .notAnEvent(let why): return "not a Clerk event: \(why)"
        }
    }
}

extension ClerkEvent {
    /// Decodes a Clerk event envelope. Unknown fields are ignored; profile fields may be null or missing,
    /// and are cut to `ProfileLimits`.
    public static func decode(_ body: [UInt8]) throws(ClerkEventError) -> ClerkEvent {
        let data = Data(body)
        let decoder = JSONDecoder()
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else { throw .notJSON }
        let envelope: Envelope<AnyObjectShape>
        do { envelope = try decoder.decode(Envelope<AnyObjectShape>.self, from: data) } catch {
            throw .notAnEvent("envelope needs a string type and a data object")
        }
        let type = envelope.type
        guard !type.isEmpty else { throw .notAnEvent("empty type") }

        switch type {
        case "user.created", "user.updated":
            guard let user = try? decoder.decode(Envelope<UserData>.self, from: data).data else {
                throw .notAnEvent("\(type) data is not a user")
            }
            guard let id = user.id, !id.isEmpty else { throw .notAnEvent("\(type) without data.id") }
            // Ordering needs a Clerk-side time: updated_at, else created_at, else the envelope time.
            guard let updatedAt = user.updated_at ?? user.created_at ?? envelope.timestamp else {
                throw .notAnEvent("\(type) without updated_at or timestamp")
            }
            let email = user.primary_email_address_id.flatMap { primary in
                user.email_addresses?.first { $0.id == primary }?.email_address
            }
            let profile = ProfileLimits.capped(UserProfile(
                clerkID: id, username: user.username, email: email,
                firstName: user.first_name, lastName: user.last_name,
                imageURL: user.image_url ?? user.profile_image_url))
            return .userUpserted(type: type, profile: profile, clerkUpdatedAt: updatedAt)
        case "user.deleted":
            guard let user = try? decoder.decode(Envelope<UserData>.self, from: data).data,
                  let id = user.id, !id.isEmpty else { throw .notAnEvent("user.deleted without data.id") }
            guard let timestamp = envelope.timestamp else { throw .notAnEvent("user.deleted without timestamp") }
            return .userDeleted(clerkID: id, at: timestamp)
        case "session.ended", "session.removed", "session.revoked":
            guard let session = try? decoder.decode(Envelope<SessionData>.self, from: data).data,
                  let sid = session.id, !sid.isEmpty else { throw .notAnEvent("\(type) without data.id") }
            return .sessionEnded(type: type, sessionID: sid, userID: session.user_id)
        default:
            return .ignored(type: type)
        }
    }

    // Wire shapes of Clerk's payloads (snake_case as sent).
    private struct Envelope<D: Decodable>: Decodable {
        let type: String
        let data: D
        let timestamp: Int64?
    }
    private struct AnyObjectShape: Decodable {}
    private struct EmailAddress: Decodable {
        let id: String?
        let email_address: String?
    }
    private struct UserData: Decodable {
        let id: String?
        let username: String?
        let first_name: String?
        let last_name: String?
        let image_url: String?
        let profile_image_url: String?
        let primary_email_address_id: String?
        let email_addresses: [EmailAddress]?
        let created_at: Int64?
        let updated_at: Int64?
    }
    private struct SessionData: Decodable {
        let id: String?
        let user_id: String?
    }
}
