import ChatDomain
import WebSocketServer

/// Who watches whose presence on this instance, and the coalesced updates they get. Changes from
/// every instance arrive through the `users` change stream; this instance's own arrive sooner from
/// its presence jobs. Each update frame is encoded once for all its subscribers.
final class PresenceHub {
    private var subscribers: [String: Set<UInt64>] = [:]
    private var coalescer = PresenceCoalescer()

    func subscribe(_ session: ChatSession, to users: [String]) {
        for user in users {
            subscribers[user, default: []].insert(session.connection.id)
            session.presenceSubscriptions.insert(user)
        }
    }

    func unsubscribe(_ session: ChatSession, from users: some Sequence<String>) {
        for user in users {
            session.presenceSubscriptions.remove(user)
            subscribers[user]?.remove(session.connection.id)
            if subscribers[user]?.isEmpty == true {
                subscribers[user] = nil
                coalescer.forget(user)
            }
        }
    }

    func remember(_ snapshots: [PresenceSnapshot]) {
        for s in snapshots where subscribers[s.userID] != nil { coalescer.remember(s) }
    }

    func observe(_ snapshot: PresenceSnapshot) {
        guard subscribers[snapshot.userID] != nil else { return }
        coalescer.observe(snapshot)
    }

    func flush(sessions: [UInt64: ChatSession]) {
        for snapshot in coalescer.flush() {
            guard let watchers = subscribers[snapshot.userID] else { continue }
            let frame = OutboundFrame(ServerFrame.presence(snapshot).encoded())
            for id in watchers { sessions[id]?.connection.send(frame) }
        }
    }
}
