import Foundation

/// Presence as the `users` documents store it, derived from connection records: a user is online
/// while at least one live connection record names them, on any instance.
public enum PresenceRules {
    /// An instance whose heartbeat is older than this is dead; its connection records are swept.
    public static let defaultInstanceTimeout: TimeInterval = 30
    public static let heartbeatInterval: TimeInterval = 5

    /// The `lastSeen` to record for connections of a dead instance: its last sign of life.
    public static func lastSeen(forDeadInstanceHeartbeat heartbeat: Date, now: Date) -> Date {
        min(heartbeat, now)
    }

    public static func isDead(heartbeat: Date, now: Date, timeout: TimeInterval) -> Bool {
        now.timeIntervalSince(heartbeat) > timeout
    }
}
