import ChatDomain
import Foundation

/// Direct and group conversations: opening, creating, changing, listing.
extension ChatStore {
    public static func openDirect(_ me: String, with other: String, origin: String, now: Date, on c: MongoConnection) throws -> (Conversation, Fanout?) {
        guard me != other else { throw ChatError.invalid("a direct conversation needs another user") }
        try UserStore.requireExisting([other], on: c)
        let id = ChatRules.directConversationID(me, other)
        return try c.withTransaction { tx in
            let result = try tx.collection(conversations).updateOne(["_id": .string(id)], ["$setOnInsert": [
                "kind": .string("direct"), "name": .null, "members": .array([me, other].sorted().map { .string($0) }),
                "lastSeq": .int64(0), "createdAt": .date(now), "updatedAt": .date(now), "createdBy": .string(me),
            ]], upsert: true)
            let conversation = try loadWritten(id, on: tx)
            let fanout = result.upserted ? try announce(conversation, origin: origin, now: now, on: tx) : nil
            return (conversation, fanout)
        }
    }

    public static func createGroup(_ me: String, name: String, members: [String], origin: String, now: Date, on c: MongoConnection) throws -> (Conversation, Fanout) {
        var all = [me]
        for m in members where !all.contains(m) { all.append(m) }
        guard all.count <= ChatRules.maxGroupMembers else { throw ChatError.invalid("at most \(ChatRules.maxGroupMembers) members") }
        try UserStore.requireExisting(all.filter { $0 != me }, on: c)
        let id = "g_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        return try c.withTransaction { tx in
            try tx.collection(conversations).insertOne([
                "_id": .string(id), "kind": .string("group"), "name": .string(name), "members": .array(all.map { .string($0) }),
                "lastSeq": .int64(0), "createdAt": .date(now), "updatedAt": .date(now), "createdBy": .string(me),
            ])
            let conversation = try loadWritten(id, on: tx)
            return (conversation, try announce(conversation, origin: origin, now: now, on: tx))
        }
    }

    public enum GroupChange: Sendable { case rename(String), add([String]), remove(String), leave }

    /// Changes a group; members hear about it (a removed member too, so their client drops it).
    /// Checks in the order a client can act on: the conversation (`not_found`, `forbidden`), its kind
    /// (`bad_request`: a direct conversation cannot change, whoever is named), then the users named.
    public static func changeGroup(_ me: String, _ id: String, _ change: GroupChange, origin: String, now: Date,
                                   on c: MongoConnection) throws -> (Conversation, Fanout) {
        try c.withTransaction { tx in
            let before = try member(me, of: id, on: tx)
            guard before.kind == .group else { throw ChatError.invalid("only groups can be changed") }
            if case .add(let users) = change { try UserStore.requireExisting(users, on: tx) }
            var update: BSONDocument
            switch change {
            case .rename(let name): update = ["$set": ["name": .string(name), "updatedAt": .date(now)]]
            case .add(let users):
                guard before.members.count + users.count <= ChatRules.maxGroupMembers else { throw ChatError.invalid("group full") }
                update = ["$addToSet": ["members": ["$each": .array(users.map { .string($0) })]], "$set": ["updatedAt": .date(now)]]
            case .remove(let user):
                guard before.members.contains(user) else { throw ChatError.notFound("\(user) is not a member") }
                update = ["$pull": ["members": .string(user)], "$set": ["updatedAt": .date(now)]]
            case .leave:
                update = ["$pull": ["members": .string(me)], "$set": ["updatedAt": .date(now)]]
            }
            if case .add(let users) = change, Set(users).isSubset(of: Set(before.members)) {
                throw ChatError.invalid("already members")
            }
            try tx.collection(conversations).updateOne(["_id": .string(id)], update)
            let after = try loadWritten(id, on: tx)
            let audience = Array(Set(before.members + after.members)).sorted()
            return (after, try announce(after, to: audience, origin: origin, now: now, on: tx))
        }
    }

    public struct Listed: Sendable {
        public let conversation: Conversation
        public let lastMessage: MessagePreview?
        public let unread: Int64
        /// Every member's "read up to" position (receipts missed while offline).
        public let reads: [String: Int64]
    }

    public struct ListPage: Sendable {
        public let conversations: [Listed]
        /// Where the next page starts; nil when this one is the last.
        public let next: ConversationCursor?
    }

    /// A page of the user's conversations, latest activity first (ties by id, so pages neither skip
    /// nor repeat), each with its last message and unread count.
    public static func list(_ me: String, limit: Int, before: ConversationCursor? = nil, on c: MongoConnection) throws -> ListPage {
        var filter: BSONDocument = ["members": .string(me)]
        if let before {
            let older: BSONDocument = ["updatedAt": ["$lt": .date(before.updatedAt)]]
            let tiedAndLower: BSONDocument = ["updatedAt": .date(before.updatedAt), "_id": ["$lt": .string(before.conversationID)]]
            filter["$or"] = .array([.document(older), .document(tiedAndLower)])
        }
        var docs = try c.collection(conversations).find(filter, sort: ["updatedAt": .int32(-1), "_id": .int32(-1)], limit: limit + 1,
                                                        hint: ["members": .int32(1)])
        let more = docs.count > limit
        if more { docs.removeLast(docs.count - limit) }
        let readDocs = try c.collection(reads).find(["conversationId": ["$in": .array(docs.compactMap { $0["_id"] })]])
        var positions: [String: [String: Int64]] = [:]
        for d in readDocs {
            guard let conversation = d["conversationId"]?.stringValue, let user = d["userId"]?.stringValue else { continue }
            positions[conversation, default: [:]][user] = d["seq"]?.int64Value ?? 0
        }
        let listed: [Listed] = try docs.compactMap { doc in
            guard let conversation = decode(doc) else { return nil }
            let unread = try c.collection(messages).count([
                "conversationId": .string(conversation.id), "seq": ["$gt": .int64(positions[conversation.id]?[me] ?? 0)],
                "senderId": ["$ne": .string(me)], "deleted": ["$ne": .bool(true)],
            ], hint: Self.bySequence)
            return Listed(conversation: conversation, lastMessage: doc["lastMessage"]?.documentValue.flatMap(preview), unread: unread,
                          reads: positions[conversation.id] ?? [:])
        }
        var next: ConversationCursor?
        if more, let last = docs.last, let at = last["updatedAt"]?.dateValue, let id = last["_id"]?.stringValue {
            next = ConversationCursor(updatedAt: at, conversationID: id)
        }
        return ListPage(conversations: listed, next: next)
    }


    static func load(_ id: String, on c: MongoConnection) throws -> Conversation? {
        try c.collection(conversations).findOne(["_id": .string(id)]).flatMap(decode)
    }

    /// A conversation this transaction just wrote; a document that does not decode (written by
    /// something else) fails the request instead of the process.
    static func loadWritten(_ id: String, on c: MongoConnection) throws -> Conversation {
        guard let conversation = try load(id, on: c) else { throw ChatError.notFound("conversation \(id) cannot be read") }
        return conversation
    }

    /// The conversation, when `me` is a member; else not found (unknown) or forbidden.
    static func member(_ me: String, of id: String, on c: MongoConnection) throws -> Conversation {
        try memberDocument(me, of: id, on: c).conversation
    }

    /// The conversation and its stored document (for fields the domain type leaves out, such as
    /// `lastMessage`), once `me` is known to be a member.
    static func memberDocument(_ me: String, of id: String, on c: MongoConnection) throws -> (conversation: Conversation, document: BSONDocument) {
        guard let doc = try c.collection(conversations).findOne(["_id": .string(id)]), let conversation = decode(doc) else {
            throw ChatError.notFound("no conversation \(id)")
        }
        guard conversation.members.contains(me) else { throw ChatError.forbidden("not a member of \(id)") }
        return (conversation, doc)
    }
}
