import ChatDomain
import Foundation
import Testing

@Suite struct ClientFrameTests {
    func decode(_ json: String) throws(FrameError) -> ClientFrame { try ClientFrame.decode(Array(json.utf8)) }

    @Test func authAndCorrelationID() throws {
        #expect(try decode(#"{"type":"auth","id":"7","token":"abc"}"#) == ClientFrame(id: "7", request: .auth(token: "abc")))
        #expect(try decode(#"{"type":"ping","extra":"ignored"}"#) == ClientFrame(id: nil, request: .ping))
    }

    @Test func chatRequests() throws {
        #expect(try decode(#"{"type":"message.send","conversationId":"dm:a:b","clientId":"c1","text":"hi"}"#).request
                == .send(conversationID: "dm:a:b", clientID: "c1", text: "hi"))
        #expect(try decode(#"{"type":"history","conversationId":"g_1","before":10,"limit":1}"#).request
                == .history(HistoryQuery(conversationID: "g_1", before: 10, limit: 1)))
        #expect(try decode(#"{"type":"sync","positions":{"dm:a:b":4}}"#).request == .sync(positions: ["dm:a:b": 4], limit: 100))
        #expect(try decode(#"{"type":"read","conversationId":"g_1","seq":0}"#).request == .read(conversationID: "g_1", seq: 0))
        #expect(try decode(#"{"type":"users.query","online":true,"limit":200}"#).request == .usersQuery(UsersQuery(onlineOnly: true, limit: 200)))
        let cursor = ConversationCursor(updatedAt: Date(timeIntervalSince1970: 1_746_360_309.655), conversationID: "dm:a:b.c")
        #expect(cursor.text == "1746360309655.dm:a:b.c")
        #expect(try decode(#"{"type":"conversations.list","limit":2,"before":"1746360309655.dm:a:b.c"}"#).request
                == .listConversations(limit: 2, before: cursor))
    }

    @Test(arguments: [
        (#"nope"#, ErrorCode.badJSON), (#"[1]"#, .badJSON), (#"{"id":"1"}"#, .badRequest), (#"{"type":"warp"}"#, .unknownType),
        (#"{"type":"auth","token":""}"#, .badRequest), (#"{"type":"auth","token":5}"#, .badRequest),
        (#"{"type":"users.query","online":1}"#, .badRequest), (#"{"type":"users.query","limit":true}"#, .badRequest),
        (#"{"type":"users.query","limit":201}"#, .badRequest), (#"{"type":"history","conversationId":"c","before":1,"after":2}"#, .badRequest),
        (#"{"type":"read","conversationId":"c","seq":-1}"#, .badRequest), (#"{"type":"read","conversationId":"c","seq":1.5}"#, .badRequest),
        (#"{"type":"message.send","conversationId":"c","clientId":"x"}"#, .badRequest),
        (#"{"type":"presence.subscribe","userIds":"bob"}"#, .badRequest), (#"{"type":"conversation.create","name":" ","members":[]}"#, .badRequest),
        (#"{"type":"sync","positions":{"c":"3"}}"#, .badRequest), (#"{"type":"ping","id":5}"#, .badRequest),
        (#"{"type":"conversations.list","before":"g_1"}"#, .badRequest), (#"{"type":"conversations.list","before":"-5.g_1"}"#, .badRequest),
        (#"{"type":"conversations.list","before":"5."}"#, .badRequest), (#"{"type":"conversations.list","before":5}"#, .badRequest),
        ("{\"type\":\"users.query\",\"search\":\"" + String(repeating: "a", count: 201) + "\"}", .badRequest),
    ])
    func malformedFramesGetACode(json: String, code: ErrorCode) {
        #expect { try decode(json) } throws: { ($0 as? FrameError)?.code == code }
    }

    @Test func errorsKeepTheCorrelationID() {
        #expect { try decode(#"{"type":"warp","id":"q"}"#) } throws: { ($0 as? FrameError)?.id == "q" }
    }
}

@Suite struct ServerFrameTests {
    @Test func framesAreStableJSON() throws {
        let bytes = ServerFrame.error(id: "1", code: .forbidden, message: "no \"way\"\n").encoded()
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"code":"forbidden","id":"1","message":"no \"way\"\n","type":"error"}"#)
        let parsed = try JSONSerialization.jsonObject(with: Data(ServerFrame.presence(PresenceSnapshot(
            userID: "u", isOnline: false, lastSeen: Date(timeIntervalSince1970: 1.5))).encoded())) as? [String: Any]
        #expect(parsed?["lastSeen"] as? String == "1970-01-01T00:00:01.500Z")
    }

    @Test func unicodeAndControlCharactersRoundTrip() throws {
        let text = "zoë 🎉 \u{01} tab\t"
        let bytes = JSONValue.object(["t": .string(text)]).encoded()
        let back = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: String]
        #expect(back?["t"] == text)
    }
}

@Suite struct ChatRulesTests {
    @Test func directConversationIDIsTheSameFromBothSides() {
        #expect(ChatRules.directConversationID("bob", "alice") == ChatRules.directConversationID("alice", "bob"))
    }

    @Test func textRules() {
        #expect(throws: FrameError.self) { try ChatRules.validateText(" \n ", maxBytes: 10) }
        #expect(throws: FrameError.self) { try ChatRules.validateText("ééééééé", maxBytes: 10) }   // 14 bytes
        #expect(throws: Never.self) { try ChatRules.validateText("héllo", maxBytes: 10) }
    }
}

@Suite struct SequenceGateTests {
    @Test func outOfOrderArrivalsAreReleasedInOrder() {
        var gate = SequenceGate<Int64>()
        let t = Date()
        do { let got = gate.accept(conversation: "c", seq: 5, item: 5, now: t); #expect(got == [5]) }
        do { let got = gate.accept(conversation: "c", seq: 7, item: 7, now: t); #expect(got == []) }
        do { let got = gate.accept(conversation: "c", seq: 8, item: 8, now: t); #expect(got == []) }
        do { let got = gate.accept(conversation: "c", seq: 6, item: 6, now: t); #expect(got == [6, 7, 8]) }
        do { let got = gate.accept(conversation: "c", seq: 6, item: 6, now: t); #expect(got == []) }   // the other path's copy
    }

    @Test func aLostPredecessorIsGivenUpAfterTheHold() {
        var gate = SequenceGate<Int64>(maxHold: 0.5)
        let t = Date()
        _ = gate.accept(conversation: "c", seq: 1, item: 1, now: t)
        do { let got = gate.accept(conversation: "c", seq: 3, item: 3, now: t); #expect(got == []) }
        do { let got = gate.expire(now: t.addingTimeInterval(0.1)); #expect(got == []) }
        do { let got = gate.expire(now: t.addingTimeInterval(1)); #expect(got == [3]) }
        do { let got = gate.accept(conversation: "c", seq: 4, item: 4, now: t); #expect(got == [4]) }
    }
}

@Suite struct PresenceTests {
    @Test func flappingIsCoalesced() {
        var c = PresenceCoalescer()
        let seen = Date(timeIntervalSince1970: 100)
        c.remember(PresenceSnapshot(userID: "u", isOnline: true, lastSeen: seen))
        c.observe(PresenceSnapshot(userID: "u", isOnline: false, lastSeen: seen))
        c.observe(PresenceSnapshot(userID: "u", isOnline: true, lastSeen: seen))
        do { let got = c.flush(); #expect(got.isEmpty) }   // a reconnecting tab: nobody needs to hear
        c.observe(PresenceSnapshot(userID: "u", isOnline: false, lastSeen: seen.addingTimeInterval(5)))
        do { let got = c.flush(); #expect(got == [PresenceSnapshot(userID: "u", isOnline: false, lastSeen: seen.addingTimeInterval(5))]) }
    }

    @Test func anOlderChangeArrivingLateIsDropped() {
        var c = PresenceCoalescer()
        let seen = Date(timeIntervalSince1970: 100)
        c.remember(PresenceSnapshot(userID: "u", isOnline: false, lastSeen: seen, version: 4))
        c.observe(PresenceSnapshot(userID: "u", isOnline: true, lastSeen: seen, version: 5))       // local read
        do { let got = c.flush().map(\.isOnline); #expect(got == [true]) }
        c.observe(PresenceSnapshot(userID: "u", isOnline: false, lastSeen: seen.addingTimeInterval(1), version: 6))
        do { let got = c.flush().map(\.isOnline); #expect(got == [false]) }
        c.observe(PresenceSnapshot(userID: "u", isOnline: true, lastSeen: seen, version: 5))       // the stream, late
        do { let got = c.flush(); #expect(got.isEmpty) }
        c.observe(PresenceSnapshot(userID: "u", isOnline: true, lastSeen: seen, version: nil))     // unversioned: taken
        do { let got = c.flush().map(\.isOnline); #expect(got == [true]) }
    }

    @Test func rateLimiterRefillsOverTime() {
        var r = RateLimiter(rate: 2, burst: 2, now: 0)
        let first = r.allow(now: 0), second = r.allow(now: 0), third = r.allow(now: 0), later = r.allow(now: 0.6)
        #expect(first && second)
        #expect(!third)
        #expect(later)
    }

    @Test func deadInstancesAreJudgedByTheirHeartbeat() {
        let beat = Date(timeIntervalSince1970: 1000)
        #expect(!PresenceRules.isDead(heartbeat: beat, now: beat.addingTimeInterval(30), timeout: 30))
        #expect(PresenceRules.isDead(heartbeat: beat, now: beat.addingTimeInterval(31), timeout: 30))
        #expect(PresenceRules.lastSeen(forDeadInstanceHeartbeat: beat, now: beat.addingTimeInterval(40)) == beat)
    }
}

@Suite struct FrameEncodingTests {
    @Test func framesAreUTF8JSONWhateverTheMessageType() throws {
        #expect(ClientFrame.isValidUTF8(Array(#"{"type":"ping","id":"é"}"#.utf8)))
        #expect(!ClientFrame.isValidUTF8([0x7B, 0xFF, 0x7D]))               // a stray byte
        #expect(!ClientFrame.isValidUTF8([0xED, 0xA0, 0x80]))               // a UTF-16 surrogate
        #expect(!ClientFrame.isValidUTF8([0xC0, 0xAF]))                     // an overlong '/'
        // UTF-16LE without a byte order mark is valid UTF-8 byte for byte; Foundation would read it
        // as UTF-16 by its zero bytes. It is not UTF-8 JSON: bad_json.
        let utf16 = Array(#"{"type":"ping"}"#.data(using: .utf16LittleEndian)!)
        #expect(ClientFrame.isValidUTF8(utf16))
        #expect(throws: FrameError(.badJSON, "a frame is one JSON object (UTF-8)")) { try ClientFrame.decode(utf16) }
    }
}
