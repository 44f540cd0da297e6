import ChatDomain
import Testing

@Suite struct UserSyncTests {
    let profile = UserProfile(clerkID: "user_1", username: "a")
    var created: ClerkEvent { .userUpserted(type: "user.created", profile: profile, clerkUpdatedAt: 100) }
    var updated: ClerkEvent { .userUpserted(type: "user.updated", profile: UserProfile(clerkID: "user_1", username: "b"), clerkUpdatedAt: 200) }
    var deleted: ClerkEvent { .userDeleted(clerkID: "user_1", at: 300) }

    @Test func firstEventApplies() {
        #expect(UserSync.decide(created, stored: nil) == .applyProfile(profile, clerkUpdatedAt: 100))
    }

    @Test func presenceCreatedRecordTakesTheProfile() {
        #expect(UserSync.decide(created, stored: StoredUserVersion(clerkUpdatedAt: nil, deleted: false)) == .applyProfile(profile, clerkUpdatedAt: 100))
    }

    @Test func olderUpdateAfterNewerIsSuperseded() {
        #expect(UserSync.decide(created, stored: StoredUserVersion(clerkUpdatedAt: 200, deleted: false)) == .superseded)
        #expect(UserSync.decide(updated, stored: StoredUserVersion(clerkUpdatedAt: 200, deleted: false)) == .superseded)
    }

    @Test func deletionIsFinal() {
        let tomb = StoredUserVersion(clerkUpdatedAt: nil, deleted: true)
        #expect(UserSync.decide(updated, stored: tomb) == .superseded)
        #expect(UserSync.decide(created, stored: tomb) == .superseded)
        #expect(UserSync.decide(deleted, stored: tomb) == .superseded)
        #expect(UserSync.decide(deleted, stored: nil) == .tombstone(clerkID: "user_1", deletedAt: 300))
        #expect(UserSync.decide(deleted, stored: StoredUserVersion(clerkUpdatedAt: 200, deleted: false)) == .tombstone(clerkID: "user_1", deletedAt: 300))
    }

    /// Applying the three events in every order ends in the same stored version.
    @Test func everyOrderEndsTheSame() {
        let events = [created, updated, deleted]
        for order in permutations(of: [0, 1, 2]) {
            var stored: StoredUserVersion?
            for i in order {
                switch UserSync.decide(events[i], stored: stored) {
                case .applyProfile(_, let at): stored = StoredUserVersion(clerkUpdatedAt: at, deleted: false)
                case .tombstone: stored = StoredUserVersion(clerkUpdatedAt: stored?.clerkUpdatedAt, deleted: true)
                default: break
                }
            }
            #expect(stored?.deleted == true, "order \(order)")
        }
    }

    private func permutations(of items: [Int]) -> [[Int]] {
        guard items.count > 1 else { return [items] }
        return items.indices.flatMap { i -> [[Int]] in
            var rest = items
            let head = rest.remove(at: i)
            return permutations(of: rest).map { [head] + $0 }
        }
    }
}
