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
            if case .rename = change {} else {
                // Members changed: message batches that kept this conversation's members from an
                // earlier batch find the head's `rev` moved and read them again (see `sendBatch`).
                try tx.collection(heads).updateOne(["_id": .string(id)], ["$inc": ["rev": .int64(1)]], upsert: true)
            }
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
        var order = try activity(of: me, on: c)
        if let before {
            order = order.filter { $0.at < before.updatedAt || ($0.at == before.updatedAt && bytewise($0.id, before: before.conversationID)) }
        }
        let more = order.count > limit
        let docs = try documents(order.prefix(limit).map(\.id), on: c)
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
        try withHeads(c.collection(conversations).find(["_id": .string(id)], limit: 1), on: c).first.flatMap(decode)
    }

    /// A conversation this transaction just wrote; a document that does not decode (written by
    /// something else) fails the request instead of the process.
    static func loadWritten(_ id: String, on c: MongoConnection) throws -> Conversation {
        guard let conversation = try load(id, on: c) else { throw ChatError.notFound("conversation \(id) cannot be read") }
        return conversation
    }

    /// The conversation, when `me` is a member; else not found (unknown) or forbidden. `withHead`:
    /// with its `lastSeq` and latest `updatedAt` (one more read; membership checks do without).
    static func member(_ me: String, of id: String, withHead: Bool = false, on c: MongoConnection) throws -> Conversation {
        try memberDocument(me, of: id, withHead: withHead, on: c).conversation
    }

    /// The conversation and its stored document (for fields the domain type leaves out, such as
    /// `lastMessage`), once `me` is known to be a member; `hasHead`: the head's fields are in it.
    static func memberDocument(_ me: String, of id: String, withHead: Bool, on c: MongoConnection)
        throws -> (conversation: Conversation, document: BSONDocument, hasHead: Bool) {
        guard var doc = try c.collection(conversations).findOne(["_id": .string(id)]) else { throw ChatError.notFound("no conversation \(id)") }
        var hasHead = false
        // A head made by a change of members alone (`rev`, no messages yet) does not count: the
        // conversation's own document still carries its lastMessage.
        if withHead, let head = try c.collection(heads).findOne(["_id": .string(id)]), head["lastSeq"] != nil {
            doc = merged(doc, head: head)
            hasHead = true
        }
        guard let conversation = decode(doc) else { throw ChatError.notFound("no conversation \(id)") }
        guard conversation.members.contains(me) else { throw ChatError.forbidden("not a member of \(id)") }
        return (conversation, doc, hasHead)
    }

    // MARK: heads

    /// The user's conversations by latest activity (ties: id descending), from the conversations'
    /// `updatedAt` (creation, group changes) and their heads' (messages). No index serves this
    /// order; the `members` lookup reads all of a user's conversations either way.
    static func activity(of me: String, on c: MongoConnection) throws -> [(id: String, at: Date)] {
        let own = try c.collection(conversations).find(["members": .string(me)], projection: ["updatedAt": .int32(1)],
                                                       hint: ["members": .int32(1)])
        var at: [String: Date] = [:]
        for doc in own { if let id = doc["_id"]?.stringValue { at[id] = doc["updatedAt"]?.dateValue ?? Date(timeIntervalSince1970: 0) } }
        guard !at.isEmpty else { return [] }
        for head in try c.collection(heads).find(["_id": ["$in": .array(at.keys.sorted().map { .string($0) })]], projection: ["updatedAt": .int32(1)]) {
            if let id = head["_id"]?.stringValue, let t = head["updatedAt"]?.dateValue, let known = at[id], t > known { at[id] = t }
        }
        return at.map { (id: $0.key, at: $0.value) }.sorted { $0.at != $1.at ? $0.at > $1.at : bytewise($1.id, before: $0.id) }
    }

    /// Byte order, as the database sorted ids (Swift's String order is by Unicode canonical equivalence).
    static func bytewise(_ a: String, before b: String) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }

    /// Conversation documents with their heads' fields, in the order of `ids`.
    static func documents(_ ids: [String], on c: MongoConnection) throws -> [BSONDocument] {
        guard !ids.isEmpty else { return [] }
        var byID: [String: BSONDocument] = [:]
        for doc in try withHeads(c.collection(conversations).find(["_id": ["$in": .array(ids.map { .string($0) })]]), on: c) {
            if let id = doc["_id"]?.stringValue { byID[id] = doc }
        }
        return ids.compactMap { byID[$0] }
    }

    /// The conversation documents with their heads' fields merged in (a conversation without
    /// messages has no head; one stored before heads existed keeps its own fields until its next message).
    static func withHeads(_ docs: [BSONDocument], on c: MongoConnection) throws -> [BSONDocument] {
        let ids = docs.compactMap { $0["_id"]?.stringValue }
        guard !ids.isEmpty else { return docs }
        let byID = try headsByID(ids, on: c)
        return docs.map { doc in doc["_id"]?.stringValue.flatMap { byID[$0] }.map { merged(doc, head: $0) } ?? doc }
    }

    /// The heads of these conversations (those that have one), by conversation id: one find.
    static func headsByID(_ ids: [String], on c: MongoConnection) throws -> [String: BSONDocument] {
        var byID: [String: BSONDocument] = [:]
        for head in try c.collection(heads).find(["_id": ["$in": .array(ids.map { .string($0) })]]) {
            if let id = head["_id"]?.stringValue { byID[id] = head }
        }
        return byID
    }

    /// `lastSeq` and `lastMessage` from the head, and the later of the two `updatedAt`s.
    static func merged(_ doc: BSONDocument, head: BSONDocument) -> BSONDocument {
        var out = doc
        if let seq = head["lastSeq"] { out["lastSeq"] = seq }
        if let last = head["lastMessage"] { out["lastMessage"] = last }
        if let at = head["updatedAt"]?.dateValue, at > (doc["updatedAt"]?.dateValue ?? .distantPast) { out["updatedAt"] = .date(at) }
        return out
    }
}
