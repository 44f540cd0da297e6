import ChatDomain
import Foundation
import Logging
import MongoStore
import ServiceLoop
import Synchronization
import WebSocketServer

/// Fan-out across instances (service thread). Every change members must hear about is written with an
/// `events` record in its transaction (the outbox); this instance delivers its own commits at once,
/// and other instances' records arrive through the `events` change stream, whose pipeline drops this
/// instance's own. Both paths end in `deliver`, which keeps each conversation's messages in `seq` order.
/// The broker also follows `users` (presence, deletions) and `revoked_sessions` (ended sessions).
final class EventBroker {
    private let loop: ServiceLoop
    private let database: Database
    private let instanceID: String
    private let registry: ConnectionRegistry
    private let presence: PresenceService
    private let logger: Logger
    private var gate = SequenceGate<Fanout>()
    private let feeds = Feeds()

    init(loop: ServiceLoop, database: Database, instanceID: String, registry: ConnectionRegistry,
         presence: PresenceService, logger: Logger) {
        self.loop = loop
        self.database = database
        self.instanceID = instanceID
        self.registry = registry
        self.presence = presence
        self.logger = logger
    }

    /// Sends a fan-out to this instance's connections of its recipients, messages in sequence order.
    /// The frame was encoded once; every connection queues the same bytes.
    func deliver(_ fanout: Fanout) {
        guard let seq = fanout.seq else { return send(fanout) }
        for ready in gate.accept(conversation: fanout.conversationID, seq: seq, item: fanout, now: Date()) { send(ready) }
    }

    /// Messages held for a predecessor that never came to this instance: delivered anyway; clients
    /// see the gap in the sequence numbers and page history.
    func tick(now: Date) {
        for fanout in gate.expire(now: now) { send(fanout) }
    }

    private func send(_ fanout: Fanout) {
        registry.send(OutboundFrame(fanout.frame), to: fanout.recipients, excluding: fanout.exclude)
    }

    // MARK: change streams

    /// Opens the change streams, once (from any thread: the database monitor calls it each time the
    /// database becomes reachable, after the indexes exist, so schema changes never race these reads).
    func openFeeds() -> @Sendable () -> Void {
        let me = ServiceBound(self, loop: loop)
        let (loop, database, logger, instanceID, feeds) = (self.loop, self.database, self.logger, self.instanceID, self.feeds)
        return { feeds.open {
            let users = PresenceStore.userChanges { snapshot, deleted in
                loop.post {
                    let broker = me.value
                    broker.presence.observe(snapshot)
                    if deleted { broker.registry.close(user: snapshot.userID, .userDeleted, "user deleted") }
                }
            }
            let sessions = PresenceStore.endedSessions { id in
                loop.post { me.value.registry.close(clerkSession: id, .sessionEnded, "session ended") }
            }
            let events = ChatStore.outboxFeed(excludingOrigin: instanceID) { fanouts in
                loop.post { fanouts.forEach(me.value.deliver) }
            }
            return [ChangeFeed(database: database, routes: [users, sessions, events], logger: logger)]
        } }
    }

    /// Stops the change streams (shutdown).
    func stopFeeds() { feeds.stop() }

    /// The feeds, opened at most once, from the monitor thread; stopped from the service thread.
    final class Feeds: Sendable {
        private let state = Mutex<(feeds: [ChangeFeed], stopped: Bool)>(([], false))

        fileprivate func open(_ make: () -> [ChangeFeed]) {
            state.withLock { state in
                guard state.feeds.isEmpty, !state.stopped else { return }
                state.feeds = make()
                state.feeds.forEach { $0.start() }
            }
        }

        fileprivate func stop() {
            state.withLock { state in
                state.stopped = true
                state.feeds.forEach { $0.stop() }
            }
        }
    }
}
