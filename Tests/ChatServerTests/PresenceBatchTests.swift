@testable import ChatServer
import ChatDomain
import ChatTesting
import Foundation
import MongoStore
import Testing

/// Connection records written in batches (PresenceBatcher), in-process against the real embedded
/// database: what a reconnect storm costs the database, and that presence stays exact.
@Suite struct PresenceBatchTests {
    private func users(_ chat: InProcessChat, _ filter: BSONDocument) throws -> [BSONDocument] {
        try chat.database.withConnection { try $0.collection(UserStore.users).find(filter) }
    }

    private func records(_ chat: InProcessChat) throws -> [BSONDocument] {
        try chat.database.withConnection { try $0.collection(PresenceStore.connections).find([:]) }
    }

    private func welcomed(_ client: InProcessClient) -> Bool {
        client.frames.contains { $0["type"] as? String == "welcome" }
    }

    @Test func twoHundredConnectsAtOnceShareAFewRoundTripsAndPresenceEndsExact() throws {
        let chat = try InProcessChat(feeds: false)
        // Half of them known through Clerk's webhook, half not yet (a minimal user is created).
        let ids = (0..<200).map { "u\($0)" }
        for id in ids.prefix(100) { try chat.createUser(id) }
        let clients = try ids.map { chat.connect(authorization: try chat.token(for: $0)) }
        #expect(chat.run(timeout: 60) { clients.allSatisfy(welcomed) }, "every connection welcomed")
        let batcher = chat.channel.presence.batcher
        #expect(batcher.requestsWritten == 200)
        #expect(batcher.operations <= 40, "200 connects took \(batcher.operations) database round trips in \(batcher.batchesWritten) batches")
        #expect(try users(chat, ["isOnline": .bool(true)]).count == 200)
        #expect(try records(chat).count == 200)

        let before = (batcher.operations, batcher.requestsWritten)
        let closedAt = Date()
        for client in clients { client.disconnect() }
        #expect(chat.run(timeout: 60) { chat.channel.presence.isIdle })
        #expect(batcher.requestsWritten - before.1 == 200)
        #expect(batcher.operations - before.0 <= 40, "200 disconnects took \(batcher.operations - before.0) round trips")
        #expect(try users(chat, ["isOnline": .bool(true)]).isEmpty, "no ghosts")
        #expect(try records(chat).isEmpty)
        let offline = try users(chat, ["isOnline": .bool(false)])
        #expect(offline.count == 200)
        #expect(offline.allSatisfy { ($0["lastSeen"]?.dateValue ?? .distantPast) >= closedAt.addingTimeInterval(-0.001) },
                "lastSeen is when the socket closed")
    }

    @Test func aBatchWithADeletedUserAndARevokedSessionRefusesJustThose() throws {
        let chat = try InProcessChat(feeds: false)
        let fillers = (0..<PresenceBatcher.maxInFlight).map { "filler\($0)" }
        for id in fillers + ["alice", "bob", "carol"] { try chat.createUser(id) }
        _ = try chat.database.withConnection { c in
            _ = try UserStore.apply(.userDeleted(clerkID: "carol", at: 2), deliveryID: "del-carol", now: Date(), on: c)
            // What the webhook route does for `session.revoked`.
            try PresenceStore.revokeSession("sess_bob_old", userID: "bob", now: Date(), on: c)
        }
        // The first connects are written alone (one per batch that may be in flight); the four after
        // them queue and go as one batch.
        let first = try fillers.map { chat.connect(authorization: try chat.token(for: $0)) }
        let alice = chat.connect(authorization: try chat.token(for: "alice"))
        let revoked = chat.connect(authorization: try chat.token(for: "bob", session: "sess_bob_old"))
        let deleted = chat.connect(authorization: try chat.token(for: "carol"))
        let newcomer = chat.connect(authorization: try chat.token(for: "dave"))
        let all = first + [alice, revoked, deleted, newcomer]
        #expect(chat.run(timeout: 20) { all.allSatisfy { welcomed($0) || $0.closed != nil } })
        #expect(chat.channel.presence.batcher.batchesWritten == fillers.count + 1, "the four shared one batch")
        #expect((first + [alice, newcomer]).allSatisfy(welcomed))
        #expect(revoked.closed?.code.rawValue == 4005)
        #expect(deleted.closed?.code.rawValue == 4006)
        #expect(!welcomed(revoked) && !welcomed(deleted))
        let held = Set(try records(chat).compactMap { $0["userId"]?.stringValue })
        #expect(held == Set(fillers + ["alice", "dave"]), "only the accepted sockets keep records")
        let online = Set(try users(chat, ["isOnline": .bool(true)]).compactMap { $0["clerkId"]?.stringValue })
        #expect(online == Set(fillers + ["alice", "dave"]))
        // A session of bob's that is not revoked still connects.
        _ = try chat.connect(as: "bob")
    }

    @Test func aConnectOnAnotherInstanceWhileTheLastSocketHereLeavesEndsOnline() throws {
        let a = try InProcessChat(feeds: false)
        let b = try InProcessChat(uri: a.database.uri.text, keys: a.keys, feeds: false)
        let ids = (0..<60).map { "m\($0)" }
        for id in ids { try a.createUser(id) }
        let onA = try ids.map { a.connect(authorization: try a.token(for: $0)) }
        #expect(InProcessChat.run([a, b], timeout: 30) { onA.allSatisfy(welcomed) })
        // Every user's last socket on A closes while the same user connects on B: the two batches
        // run at once on the database, in whatever interleaving; each user must end online.
        for client in onA { client.disconnect() }
        let onB = try ids.map { b.connect(authorization: try b.token(for: $0)) }
        #expect(InProcessChat.run([a, b], timeout: 30) { onB.allSatisfy(welcomed) && a.channel.presence.isIdle && b.channel.presence.isIdle })
        let offline = try users(a, ["isOnline": .bool(false)]).compactMap { $0["clerkId"]?.stringValue }
        #expect(offline.isEmpty, "left offline though connected on B: \(offline)")
        #expect(Set(try records(a).compactMap { $0["instanceId"]?.stringValue }) == [b.instanceID])
        // And the other way: B's sockets go; nobody stays online.
        for client in onB { client.disconnect() }
        #expect(InProcessChat.run([a, b], timeout: 30) { b.channel.presence.isIdle })
        #expect(try users(a, ["isOnline": .bool(true)]).isEmpty)
    }

    @Test func anInstanceSweptWhileTheDatabaseWasAwayWritesItsRecordsAgain() throws {
        let chat = try InProcessChat(settings: ["PRESENCE_HEARTBEAT_SECONDS": "1"], feeds: false)
        try chat.createUser("alice")
        _ = try chat.connect(as: "alice")
        let instances = { try chat.database.withConnection { try $0.collection(PresenceStore.instances).find(["_id": .string(chat.instanceID)]) } }
        try #require(chat.run(timeout: 10) { (try? instances().count) == 1 })
        chat.run(timeout: 1.5) { false }   // a heartbeat after the record existed: the instance knows it was recorded
        // Another instance finds this one silent for an hour and sweeps it: alice offline, records gone.
        try chat.database.withConnection { c in
            try c.collection(PresenceStore.instances).updateOne(["_id": .string(chat.instanceID)],
                                                                ["$set": ["heartbeatAt": .date(Date().addingTimeInterval(-3600))]])
            let sweep = try PresenceStore.sweepDeadInstances(except: "the-other", now: Date(), timeout: 30, on: c)
            #expect(sweep.users == ["alice"])
        }
        #expect(try users(chat, ["clerkId": .string("alice")]).first?["isOnline"]?.boolValue == false)
        #expect(try records(chat).isEmpty)
        // Its next heartbeat finds its record gone: its sockets are registered again.
        #expect(chat.run(timeout: 10) {
            (try? records(chat).count) == 1 && (try? users(chat, ["clerkId": .string("alice")]).first?["isOnline"]?.boolValue) == true
        }, "alice online again with a record")
    }
}
