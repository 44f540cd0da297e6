@testable import ChatServer
import ChatDomain
import MongoStore
import ChatTesting
import Foundation
import Testing

/// The channel's request handling in-process (ChatTesting's InProcessChat): real signed tokens, the
/// real embedded database, in-memory connections instead of sockets.
@Suite struct InProcessChannelTests {
    @Test func messagesAreAckedAfterCommitDeliveredInOrderAndStoredOncePerClientID() throws {
        let chat = try InProcessChat(feeds: false)
        try chat.createUser("alice")
        try chat.createUser("bob")
        let alice = try chat.connect(as: "alice")
        let bob = try chat.connect(as: "bob")
        let opened = try alice.call("conversation.direct", ["userId": "bob"])
        let conversation = try #require((opened["data"] as? [String: Any])?["conversation"] as? [String: Any])
        let id = try #require(conversation["conversationId"] as? String)

        var seqs: [Int] = []
        for n in 1...3 {
            let ack = try alice.call("message.send", ["conversationId": id, "clientId": "c\(n)", "text": "hello \(n)"])
            seqs.append(try #require((ack["data"] as? [String: Any])?["seq"] as? Int))
        }
        #expect(seqs == [1, 2, 3])
        // A resend (a lost ack) gets the same message back, and nobody hears it twice.
        let again = try alice.call("message.send", ["conversationId": id, "clientId": "c2", "text": "hello 2"])
        #expect((again["data"] as? [String: Any])?["seq"] as? Int == 2)
        chat.run(timeout: 2) { bob.events("message").count >= 4 }
        let delivered = bob.events("message").compactMap { ($0["message"] as? [String: Any])?["seq"] as? Int }
        #expect(delivered == [1, 2, 3])
    }

    @Test func requestsBeforeWelcomeAndMalformedFramesGetTheProtocolsAnswers() throws {
        let chat = try InProcessChat(feeds: false)
        let anonymous = chat.connect()
        let refused = try anonymous.call("conversations.list")
        #expect(refused["type"] as? String == "error")
        #expect(refused["code"] as? String == "unauthenticated")
        anonymous.write(Array("{not json".utf8))
        chat.run(timeout: 5) { anonymous.frames.contains { $0["code"] as? String == "bad_json" } }
        #expect(anonymous.frames.contains { $0["code"] as? String == "bad_json" })
        #expect(anonymous.closed == nil, "a malformed frame is answered, not a reason to close")
        // Binary frames are UTF-8 JSON too: bytes that are not UTF-8 close the connection with 1007.
        anonymous.write([0x7B, 0xFF, 0x7D], binary: true)
        #expect(anonymous.closed?.code.rawValue == 1007)
    }

    @Test func concurrentSendsShareTransactionsAndGetGapFreeSequenceNumbers() throws {
        let chat = try InProcessChat(feeds: false)
        let users = (1...4).map { "u\($0)" }
        for user in users { try chat.createUser(user) }
        let clients = try users.map { try chat.connect(as: $0) }
        let created = try clients[0].call("conversation.create", ["name": "team", "members": Array(users.dropFirst())])
        let id = try #require(((created["data"] as? [String: Any])?["conversation"] as? [String: Any])?["conversationId"] as? String)
        // 100 sends arrive before any is stored: they must not cost 100 transactions.
        var requests: [(InProcessClient, String)] = []
        for round in 0..<25 {
            for (i, client) in clients.enumerated() {
                requests.append((client, client.request("message.send", ["conversationId": id, "clientId": "m\(i)-\(round)", "text": "x"])))
            }
        }
        let acks = try requests.map { client, request in try client.reply(to: request, timeout: 30) }
        let seqs = acks.compactMap { ($0["data"] as? [String: Any])?["seq"] as? Int }
        #expect(seqs.count == 100, "every send acked: \(acks.filter { $0["type"] as? String != "ok" }.prefix(3))")
        #expect(Set(seqs) == Set(1...100), "gap-free and unique")
        let batches = chat.channel.requests.batcher.batchesCommitted
        #expect(batches < 50, "100 sends took \(batches) transactions")
    }

    @Test func presenceIsCountedAcrossConnectionsAndCoalesced() throws {
        let chat = try InProcessChat(feeds: false)
        try chat.createUser("alice")
        try chat.createUser("watcher")
        let watcher = try chat.connect(as: "watcher")
        let subscribed = try watcher.call("presence.subscribe", ["userIds": ["alice"]])
        let initial = ((subscribed["data"] as? [String: Any])?["users"] as? [[String: Any]])?.first
        #expect(initial?["isOnline"] as? Bool == false)

        let first = try chat.connect(as: "alice")
        let second = try chat.connect(as: "alice")
        #expect(chat.run(timeout: 5) { watcher.events("presence").count >= 1 })
        #expect(watcher.events("presence").map { $0["isOnline"] as? Bool } == [true])
        first.disconnect()
        chat.run(timeout: 1) { false }   // several ticks: a tab closing is not "offline"
        #expect(watcher.events("presence").count == 1)
        second.disconnect()
        #expect(chat.run(timeout: 5) { watcher.events("presence").count >= 2 })
        #expect(watcher.events("presence").last?["isOnline"] as? Bool == false)
    }

    @Test func twoInstancesOnOneDatabaseActAsOne() throws {
        let a = try InProcessChat()
        let b = try InProcessChat(uri: a.database.uri.text, keys: a.keys)
        try a.createUser("alice")
        try a.createUser("bob")
        let alice = try a.connect(as: "alice")
        let aliceElsewhere = try a.connect(as: "alice")
        let bob = try b.connect(as: "bob")
        // The group's announcement reaching bob through B proves B's change stream is open; until it
        // is (it opens on its own thread), another group is created each second.
        var createdCount = 0
        var lastTry = Date.distantPast
        let heard = InProcessChat.run([a, b], timeout: 30) {
            if bob.events("conversation").isEmpty && Date().timeIntervalSince(lastTry) > 1 {
                lastTry = Date()
                if let reply = try? alice.call("conversation.create", ["name": "pair", "members": ["bob"]]), reply["type"] as? String == "ok" {
                    createdCount += 1
                }
            }
            return !bob.events("conversation").isEmpty
        }
        try #require(heard, "bob (on B) never heard of the group created on A")
        let groupID = try #require(((bob.events("conversation").last?["conversation"]) as? [String: Any])?["conversationId"] as? String)
        for n in 1...5 {
            _ = try alice.call("message.send", ["conversationId": groupID, "clientId": "c\(n)", "text": "hi \(n)"])
        }
        InProcessChat.run([a, b], timeout: 15) { bob.events("message").count >= 5 }
        let onB = bob.events("message").compactMap { ($0["message"] as? [String: Any])?["seq"] as? Int }
        #expect(onB == [1, 2, 3, 4, 5], "in order, once each, on the other instance")
        InProcessChat.run([a, b], timeout: 1) { false }
        let onA = aliceElsewhere.events("message").compactMap { ($0["message"] as? [String: Any])?["seq"] as? Int }
        #expect(onA == [1, 2, 3, 4, 5], "the sender's instance delivers its own messages once")
        #expect(aliceElsewhere.events("conversation").count == createdCount,
                "and its other events once too (not again from the change stream)")
    }
}

/// The message batcher remembers the members of the conversations it wrote (with the head's rev) and does
/// not read it again; these are the guarantees that memory could break.
@Suite struct RememberedConversationTests {
    @Test func anotherInstancesMessagesAndMemberChangesAreNotMissed() throws {
        let a = try InProcessChat(feeds: false)
        let b = try InProcessChat(uri: a.database.uri.text, keys: a.keys, feeds: false)
        for user in ["alice", "bob", "carol"] { try a.createUser(user) }
        let bobOnA = try a.connect(as: "bob")
        let aliceOnB = try b.connect(as: "alice")
        let carolOnB = try b.connect(as: "carol")
        let created = try aliceOnB.call("conversation.create", ["name": "trio", "members": ["bob", "carol"]])
        let id = try #require(((created["data"] as? [String: Any])?["conversation"] as? [String: Any])?["conversationId"] as? String)
        func seq(_ reply: [String: Any]) -> Int? { (reply["data"] as? [String: Any])?["seq"] as? Int }

        #expect(seq(try bobOnA.call("message.send", ["conversationId": id, "clientId": "b1", "text": "1"])) == 1)
        #expect(seq(try bobOnA.call("message.send", ["conversationId": id, "clientId": "b2", "text": "2"])) == 2)
        let batcher = a.channel.requests.batcher
        #expect(batcher.conversationsNotRead == 1, "the second send did not read the conversation again")

        // B writes seqs 3 and 4: A's memory (lastSeq 2) is stale, and A must go on from 4.
        #expect(seq(try carolOnB.call("message.send", ["conversationId": id, "clientId": "c1", "text": "3"])) == 3)
        #expect(seq(try carolOnB.call("message.send", ["conversationId": id, "clientId": "c2", "text": "4"])) == 4)
        #expect(seq(try bobOnA.call("message.send", ["conversationId": id, "clientId": "b3", "text": "5"])) == 5)
        #expect(batcher.conversationsNotRead == 2, "messages do not change members: lastSeq comes from the head")
        #expect(seq(try bobOnA.call("message.send", ["conversationId": id, "clientId": "b4", "text": "6"])) == 6)
        #expect(batcher.conversationsNotRead == 3)

        // B removes bob: A remembers him as a member, and must refuse his next message.
        let removed = try aliceOnB.call("conversation.remove", ["conversationId": id, "userId": "bob"])
        #expect(removed["type"] as? String == "ok", "\(removed)")
        let refused = try bobOnA.call("message.send", ["conversationId": id, "clientId": "b5", "text": "gone"])
        #expect(refused["code"] as? String == "forbidden", "\(refused)")
        #expect(batcher.conversationsNotRead == 3, "a change of members is read")
        #expect(seq(try carolOnB.call("message.send", ["conversationId": id, "clientId": "c3", "text": "7"])) == 7)

        let history = try aliceOnB.call("history", ["conversationId": id, "limit": 50])
        let stored = ((history["data"] as? [String: Any])?["messages"] as? [[String: Any]])?.compactMap { $0["seq"] as? Int }
        #expect(stored == Array(1...7), "gap-free, no duplicate")
    }
}

@Suite struct RememberedConversationsBoundTests {
    static func known(_ id: String, members: Int) -> ChatStore.KnownConversation {
        ChatStore.KnownConversation(conversation: Conversation(id: id, kind: .group, name: nil, members: (0..<members).map { "u\($0)" },
                                                               lastSeq: 1, updatedAt: Date()), rev: nil)
    }

    @Test func memberIDsHeldStayUnderTheBoundAndTheOldestGoFirst() {
        var remembered = RememberedConversations(maxMembers: 1_000)
        for n in 0..<30 { remembered.remember(["c\(n)": Self.known("c\(n)", members: 100)]) }
        #expect(remembered.members <= 1_000)
        #expect(remembered.lookUp(["c29"]).count == 1, "the newest is kept")
        #expect(remembered.lookUp(["c0", "c1", "c2"]).isEmpty, "the oldest went")
        remembered.forget(["c29"])
        #expect(remembered.lookUp(["c29"]).isEmpty)
        // Forgetting and remembering again many times does not grow it.
        for _ in 0..<10_000 {
            remembered.forget(["c28"])
            remembered.remember(["c28": Self.known("c28", members: 2)])
        }
        #expect(remembered.count <= 11)
    }
}
