import Foundation

/// Turns the stream of presence changes (from every instance, through the database) into what
/// subscribers are told: at most one update per user per flush, and nothing when a user flapped
/// back to the state subscribers already know (a reconnecting tab).
public struct PresenceCoalescer: Sendable {
    private var known: [String: PresenceSnapshot] = [:]
    private var pending: [String: PresenceSnapshot] = [:]

    public init() {}

    /// Records a change; returns nothing until `flush`.
    public mutating func observe(_ snapshot: PresenceSnapshot) {
        pending[snapshot.userID] = snapshot
    }

    /// What subscribers must hear now.
    public mutating func flush() -> [PresenceSnapshot] {
        var out: [PresenceSnapshot] = []
        for (user, snapshot) in pending {
            if let last = known[user], last.isOnline == snapshot.isOnline, snapshot.isOnline || last.lastSeen == snapshot.lastSeen {
                continue
            }
            known[user] = snapshot
            out.append(snapshot)
        }
        pending.removeAll(keepingCapacity: true)
        return out.sorted { $0.userID < $1.userID }
    }

    /// Forget users nobody here subscribes to any more.
    public mutating func forget(_ userID: String) {
        known[userID] = nil
        pending[userID] = nil
    }

    /// Seeds what subscribers were told in a snapshot, so an identical change is not repeated.
    public mutating func remember(_ snapshot: PresenceSnapshot) {
        known[snapshot.userID] = snapshot
    }
}
