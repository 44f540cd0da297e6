import ChatDomain

/// The wire form of a request: the inverse of `ClientFrame.decode` (the server's reader).
extension ClientRequest {
    public var type: String {
        switch self {
        case .auth: return "auth"
        case .refresh: return "refresh"
        case .ping: return "ping"
        case .presenceSubscribe: return "presence.subscribe"
        case .presenceUnsubscribe: return "presence.unsubscribe"
        case .usersQuery: return "users.query"
        case .openDirect: return "conversation.direct"
        case .createGroup: return "conversation.create"
        case .renameGroup: return "conversation.rename"
        case .addMembers: return "conversation.add"
        case .removeMember: return "conversation.remove"
        case .leave: return "conversation.leave"
        case .listConversations: return "conversations.list"
        case .send: return "message.send"
        case .edit: return "message.edit"
        case .delete: return "message.delete"
        case .history: return "history"
        case .sync: return "sync"
        case .read: return "read"
        case .typing: return "typing"
        }
    }

    public var fields: [String: JSONValue] {
        func ids(_ list: [String]) -> JSONValue { .array(list.map(JSONValue.string)) }
        switch self {
        case .auth(let token), .refresh(let token): return ["token": .string(token)]
        case .ping: return [:]
        case .presenceSubscribe(let users), .presenceUnsubscribe(let users): return ["userIds": ids(users)]
        case .usersQuery(let q):
            var o: [String: JSONValue] = ["limit": .int(Int64(q.limit))]
            if let s = q.search { o["search"] = .string(s) }
            if q.onlineOnly { o["online"] = true }
            if let a = q.after { o["after"] = .string(a) }
            return o
        case .openDirect(let user): return ["userId": .string(user)]
        case .createGroup(let name, let members): return ["name": .string(name), "members": ids(members)]
        case .renameGroup(let c, let name): return ["conversationId": .string(c), "name": .string(name)]
        case .addMembers(let c, let users): return ["conversationId": .string(c), "userIds": ids(users)]
        case .removeMember(let c, let user): return ["conversationId": .string(c), "userId": .string(user)]
        case .leave(let c): return ["conversationId": .string(c)]
        case .listConversations(let limit, let before):
            var fields: [String: JSONValue] = ["limit": .int(Int64(limit))]
            if let before { fields["before"] = .string(before.text) }
            return fields
        case .send(let c, let clientID, let text):
            return ["conversationId": .string(c), "clientId": .string(clientID), "text": .string(text)]
        case .edit(let c, let m, let text): return ["conversationId": .string(c), "messageId": .string(m), "text": .string(text)]
        case .delete(let c, let m): return ["conversationId": .string(c), "messageId": .string(m)]
        case .history(let q):
            var o: [String: JSONValue] = ["conversationId": .string(q.conversationID), "limit": .int(Int64(q.limit))]
            if let b = q.before { o["before"] = .int(b) }
            if let a = q.after { o["after"] = .int(a) }
            return o
        case .sync(let positions, let limit):
            return ["positions": .object(positions.mapValues { .int($0) }), "limit": .int(Int64(limit))]
        case .read(let c, let seq): return ["conversationId": .string(c), "seq": .int(seq)]
        case .typing(let c): return ["conversationId": .string(c)]
        }
    }

    /// The frame to send, with its correlation id.
    public func frame(id: String) -> [String: JSONValue] {
        var o = fields
        o["type"] = .string(type)
        o["id"] = .string(id)
        return o
    }
}
