/// What the `users` collection holds for a Clerk id, as far as ordering webhooks is concerned.
public struct StoredUserVersion: Equatable, Sendable {
    /// Clerk's `updated_at` of the last applied profile, nil when only presence created the record.
    public var clerkUpdatedAt: Int64?
    public var deleted: Bool

    public init(clerkUpdatedAt: Int64?, deleted: Bool) {
        self.clerkUpdatedAt = clerkUpdatedAt
        self.deleted = deleted
    }
}

/// The decision a user webhook leads to. Webhooks arrive late, twice and out of order; this rule makes
/// every order of the same events end in the same state.
public enum UserSyncDecision: Equatable, Sendable {
    /// Write the profile (insert the user if there is none).
    case applyProfile(UserProfile, clerkUpdatedAt: Int64)
    /// Remove personal data and keep a tombstone.
    case tombstone(clerkID: String, deletedAt: Int64)
    /// A newer version, or the deletion, is already stored.
    case superseded
    /// Not a user event.
    case notAUserEvent
}

public enum UserSync {
    public static func decide(_ event: ClerkEvent, stored: StoredUserVersion?) -> UserSyncDecision {
        switch event {
        case .userUpserted(_, let profile, let updatedAt):
            // Deletion is final in Clerk: a late created/updated never brings the user back.
            if let stored, stored.deleted { return .superseded }
            if let known = stored?.clerkUpdatedAt, known >= updatedAt { return .superseded }
            return .applyProfile(profile, clerkUpdatedAt: updatedAt)
        case .userDeleted(let id, let at):
            if let stored, stored.deleted { return .superseded }
            return .tombstone(clerkID: id, deletedAt: at)
        case .sessionEnded, .ignored:
            return .notAUserEvent
        }
    }
}
