import ChatClient
import ChatDomain
import Foundation
import Testing

@Suite struct RequestEncodingTests {
    /// Every request the client can make, read back by the server's own decoder.
    static let requests: [ClientRequest] = [
        .auth(token: "t"), .refresh(token: "t"), .ping,
        .presenceSubscribe(userIDs: ["u1", "u2"]), .presenceUnsubscribe(userIDs: ["u1"]),
        .usersQuery(UsersQuery(search: "ad", onlineOnly: true, limit: 20, after: "u0")), .usersQuery(UsersQuery()),
        .openDirect(userID: "bob"), .createGroup(name: "team", members: ["a", "b"]), .renameGroup(conversationID: "g_1", name: "x"),
        .addMembers(conversationID: "g_1", userIDs: ["c"]), .removeMember(conversationID: "g_1", userID: "c"),
        .leave(conversationID: "g_1"), .listConversations(limit: 7),
        .listConversations(limit: 2, before: ConversationCursor(updatedAt: Date(timeIntervalSince1970: 1_700_000_000.123), conversationID: "dm:a:b")),
        .send(conversationID: "dm:a:b", clientID: "c1", text: "hi \"there\"\n☕"),
        .edit(conversationID: "dm:a:b", messageID: "m1", text: "x"), .delete(conversationID: "dm:a:b", messageID: "m1"),
        .history(HistoryQuery(conversationID: "g_1", before: 5, limit: 3)), .history(HistoryQuery(conversationID: "g_1", after: 2)),
        .sync(positions: ["g_1": 4, "dm:a:b": 0], limit: 100), .read(conversationID: "g_1", seq: 9), .typing(conversationID: "g_1"),
    ]

    @Test(arguments: requests) func theServerReadsWhatTheClientWrites(_ request: ClientRequest) throws {
        let bytes = JSONValue.object(request.frame(id: "r1")).encoded()
        let decoded = try ClientFrame.decode(bytes)
        #expect(decoded == ClientFrame(id: "r1", request: request))
    }

    @Test func serverFramesParseBackIntoDomainTypes() throws {
        let message = ChatMessage(id: "m1", conversationID: "g_1", seq: 3, senderID: "a", clientID: "c", text: "t",
                                  createdAt: Date(timeIntervalSince1970: 1_700_000_000.123), editedAt: nil)
        let frame = ServerFrame.event(type: "message", fields: ["message": .object(message.json)]).encoded()
        let parsed = try #require(JSONValue.parse(frame))
        #expect(ChatMessage(json: parsed["message"]) == message)
        #expect(JSONValue.parse("{\"a\":true,\"b\":1,\"c\":1.5,\"d\":null}") == ["a": true, "b": 1, "c": .double(1.5), "d": nil])
    }
}
