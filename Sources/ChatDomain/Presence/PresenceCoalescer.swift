import Foundation

/// Turns the stream of presence changes (from every instance, through the database) into what
/// subscribers are told: at most one update per user per flush, and nothing when a user flapped
/// back to the state subscribers already know (a reconnecting tab). A change older than one already
/// seen (a change-stream event arriving after this instance's own newer read) is dropped.
public struct PresenceCoalescer: Sendable {
    private var known: [String: PresenceSnapshot] = [:]
    private var pending: [String: PresenceSnapshot] = [:]
    private var newest: [String: Int64] = [:]

    public init() {}

    /// Records a change; returns nothing until `flush`.
    public mutating func observe(_ snapshot: PresenceSnapshot) {
        guard isCurrent(snapshot) else { return }
        pending[snapshot.userID] = snapshot
    }

    private mutating func isCurrent(_ snapshot: PresenceSnapshot) -> Bool {
        guard let version = snapshot.version else { return true }
        if let seen = newest[snapshot.userID], version < seen { return false }
        newest[snapshot.userID] = version
        return true
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
        newest[userID] = nil
    }

    /// Seeds what subscribers were told in a snapshot, so an identical change is not repeated.
    public mutating func remember(_ snapshot: PresenceSnapshot) {
        guard isCurrent(snapshot) else { return }
        known[snapshot.userID] = snapshot
    }
}
