import ChatDomain
import Foundation

/// Conversations, messages and read state in MongoDB. Every change that members must hear about also
/// writes an `events` record in the same transaction (a transactional outbox): other instances read
/// it from a change stream and forward its already-encoded frame to their local members.
public enum ChatStore {
    public static let conversations = "conversations"
    public static let messages = "messages"
    public static let reads = "reads"
    public static let events = "events"
    /// Per conversation with messages: `lastSeq`, `lastMessage`, `updatedAt` of the last message.
    /// Apart from the conversation, so that a message does not rewrite the conversation document
    /// and its `members` index keys (one per member: 2/3 of a batch's time in a group of 200).
    public static let heads = "conversation_heads"
    /// Events are a fan-out transport, not history: gone after a minute.
    static let eventRetention: TimeInterval = 60
    /// The (conversationId, seq) index, named for reads whose other fields would otherwise keep the
    /// embedded database from using it.
    static let bySequence: BSONDocument = BSONDocument([("conversationId", .int32(1)), ("seq", .int32(1))])

    public enum ChatError: Error, Equatable {
        case notFound(String)
        case forbidden(String)
        case invalid(String)
    }

    /// A fan-out: the frame, who gets it (minus `exclude`), and the sequence number for message inserts.
    public struct Fanout: Sendable {
        public let conversationID: String
        public let recipients: [String]
        public let exclude: String?
        public let seq: Int64?
        public let frame: [UInt8]
    }

    // MARK: conversations

    public static func openDirect(_ me: String, with other: String, origin: String, now: Date, on c: MongoConnection) throws -> (Conversation, Fanout?) {
        guard me != other else { throw ChatError.invalid("a direct conversation needs another user") }
        try requireUsers([other], on: c)
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
        try requireUsers(all.filter { $0 != me }, on: c)
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

    public enum GroupChange { case rename(String), add([String]), remove(String), leave }

    /// Changes a group; members hear about it (a removed member too, so their client drops it).
    /// Checks in the order a client can act on: the conversation (`not_found`, `forbidden`), its kind
    /// (`bad_request`: a direct conversation cannot change, whoever is named), then the users named.
    public static func changeGroup(_ me: String, _ id: String, _ change: GroupChange, origin: String, now: Date,
                                   on c: MongoConnection) throws -> (Conversation, Fanout) {
        try c.withTransaction { tx in
            let before = try member(me, of: id, on: tx)
            guard before.kind == .group else { throw ChatError.invalid("only groups can be changed") }
            if case .add(let users) = change { try requireUsers(users, on: tx) }
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
        public let lastMessage: BSONDocument?
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
            order = order.filter { $0.at < before.updatedAt || ($0.at == before.updatedAt && $0.id < before.conversationID) }
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
            return Listed(conversation: conversation, lastMessage: doc["lastMessage"]?.documentValue, unread: unread,
                          reads: positions[conversation.id] ?? [:])
        }
        var next: ConversationCursor?
        if more, let last = docs.last, let at = last["updatedAt"]?.dateValue, let id = last["_id"]?.stringValue {
            next = ConversationCursor(updatedAt: at, conversationID: id)
        }
        return ListPage(conversations: listed, next: next)
    }

    // MARK: messages

    public struct PendingSend: Sendable {
        public let conversationID: String
        public let senderID: String
        public let clientID: String
        public let text: String
        public init(conversationID: String, senderID: String, clientID: String, text: String) {
            self.conversationID = conversationID
            self.senderID = senderID
            self.clientID = clientID
            self.text = text
        }
    }

    public enum SendResult: Sendable {
        /// Stored (or already stored by an earlier try with the same client id: `fresh` false).
        case stored(ChatMessage, fresh: Bool)
        case failed(ChatError)
        /// Not stored: its conversation stayed blocked by conflicts (retry later, same client id).
        case retryLater(String)
    }

    /// Stores many senders' messages in one transaction of four round trips, whatever the number of
    /// conversations: one read of the conversations, one bulk of sequence-counter updates, one insert
    /// of the messages, one of their events (one per conversation). The sequence is gap-free because
    /// counters and messages commit together.
    ///
    /// A resend of a stored client id is rare (a lost ack), so the first try does not look for earlier
    /// sends: the unique (conversation, sender, clientId) index refuses a duplicate, and the retry
    /// (which looks up earlier sends, one read per conversation and sender) finds it and returns its
    /// ack. The unique (conversation, seq) index likewise refuses sequence numbers a concurrent writer
    /// took first. Both, and write conflicts, are retried in `withTransaction`'s one loop, within
    /// `retry`; past it the batch fails with `DatabaseError.busy`.
    public static func sendBatch(_ sends: [PendingSend], origin: String, now: Date, retry: RetryPolicy = .standard,
                                 on c: MongoConnection) throws -> ([SendResult], [Fanout]) {
        try c.withTransaction(retry: retry, alsoRetry: { if case .duplicateKey = $0 { return true } else { return false } }) { tx, attempt in
            let lookUpEarlier = attempt > 1
            var results = [SendResult?](repeating: nil, count: sends.count)
            let ids = Set(sends.map(\.conversationID)).sorted()
            var conversationsByID: [String: Conversation] = [:]
            for doc in try withHeads(tx.collection(conversations).find(["_id": ["$in": .array(ids.map { .string($0) })]]), on: tx) {
                if let conv = decode(doc) { conversationsByID[conv.id] = conv }
            }
            var known: [String: ChatMessage] = [:]
            if lookUpEarlier {
                // One lookup per (conversation, sender) on the unique index: equality prefixes the
                // embedded database can serve from it.
                let groups = Dictionary(grouping: sends) { [$0.conversationID, $0.senderID] }
                for (key, group) in groups.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                    let clientIDs = Set(group.map(\.clientID))
                    let earlier = try tx.collection(messages).find([
                        "conversationId": .string(key[0]), "senderId": .string(key[1]),
                        "clientId": ["$in": .array(clientIDs.map { .string($0) })],
                    ])
                    for doc in earlier { if let m = message(doc) { known[m.conversationID + "\u{0}" + m.senderID + "\u{0}" + m.clientID] = m } }
                }
            }

            var fresh: [String: [ChatMessage]] = [:]
            var next: [String: Int64] = [:]
            for (i, send) in sends.enumerated() {
                guard let conversation = conversationsByID[send.conversationID] else {
                    results[i] = .failed(.notFound("no conversation \(send.conversationID)"))
                    continue
                }
                guard conversation.members.contains(send.senderID) else {
                    results[i] = .failed(.forbidden("not a member of \(send.conversationID)"))
                    continue
                }
                let key = send.conversationID + "\u{0}" + send.senderID + "\u{0}" + send.clientID
                if let stored = known[key] { results[i] = .stored(stored, fresh: false); continue }
                let seq = (next[send.conversationID] ?? conversation.lastSeq) + 1
                next[send.conversationID] = seq
                let m = ChatMessage(id: "m_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
                                    conversationID: send.conversationID, seq: seq, senderID: send.senderID,
                                    clientID: send.clientID, text: send.text, createdAt: now)
                known[key] = m
                fresh[send.conversationID, default: []].append(m)
                results[i] = .stored(m, fresh: true)
            }
            guard !fresh.isEmpty else { return (results.map { $0 ?? .failed(.invalid("not processed")) }, []) }

            // The head is set, not incremented: a conversation stored before heads existed starts
            // from the conversation's own lastSeq. A concurrent writer conflicts on the head (or on
            // its insert: duplicate _id), and the unique (conversation, seq) index refuses its seqs.
            let counters: [(filter: BSONDocument, update: BSONDocument)] = fresh.keys.sorted().map { id in
                let list = fresh[id]!, last = list.last!
                return (["_id": .string(id)],
                        ["$set": [
                            "lastSeq": .int64(last.seq), "updatedAt": .date(now),
                            "lastMessage": ["messageId": .string(last.id), "seq": .int64(last.seq), "senderId": .string(last.senderID),
                                            "text": .string(String(last.text?.prefix(200) ?? "")), "deleted": .bool(false),
                                            "createdAt": .date(now)],
                        ]])
            }
            guard try tx.collection(heads).bulkUpdateOne(counters, upsert: true) == Int64(counters.count) else {
                throw DatabaseError.failed(domain: 0, code: 112, message: "WriteConflict on lastSeq")
            }
            // Another writer took these sequence numbers first: the unique index refuses them and the
            // whole transaction, counters included, is retried.
            try tx.collection(messages).insertMany(fresh.keys.sorted().flatMap { fresh[$0]!.map(document) })
            var fanouts: [Fanout] = []
            var eventDocs: [BSONDocument] = []
            for id in fresh.keys.sorted() {
                let members = conversationsByID[id]!.members
                let batch = fresh[id]!.map { m in
                    Fanout(conversationID: id, recipients: members, exclude: nil, seq: m.seq,
                           frame: ServerFrame.event(type: "message", fields: ["message": .object(m.json)]).encoded())
                }
                fanouts += batch
                eventDocs.append(eventDocument(batch, origin: origin, now: now))
            }
            try tx.collection(events).insertMany(eventDocs)
            return (results.map { $0 ?? .failed(.invalid("not processed")) }, fanouts)
        }
    }

    public enum MessageChange { case edit(String), delete }

    /// Edits or deletes one's own message; members get the latest state.
    public static func change(_ me: String, conversationID: String, messageID: String, _ change: MessageChange,
                              origin: String, now: Date, on c: MongoConnection) throws -> (ChatMessage, Fanout) {
        try c.withTransaction { tx in
            let (conversation, stored, hasHead) = try memberDocument(me, of: conversationID, withHead: true, on: tx)
            let previews = hasHead ? heads : conversations
            guard let doc = try tx.collection(messages).findOne(["_id": .string(messageID)]),
                  doc["conversationId"]?.stringValue == conversationID,
                  var m = message(doc) else { throw ChatError.notFound("no message \(messageID)") }
            guard m.senderID == me else { throw ChatError.forbidden("only the sender can change a message") }
            guard !m.deleted else { throw ChatError.notFound("message \(messageID) was deleted") }
            // The list preview follows the change only when this is the last message.
            let isLast = stored["lastMessage"]?.documentValue?["messageId"]?.stringValue == messageID
            let type: String
            switch change {
            case .edit(let text):
                try tx.collection(messages).updateOne(["_id": .string(messageID)], ["$set": ["text": .string(text), "editedAt": .date(now)]])
                if isLast {
                    try tx.collection(previews).updateOne(["_id": .string(conversationID)],
                                                          ["$set": ["lastMessage.text": .string(String(text.prefix(200)))]])
                }
                m.text = text
                m.editedAt = now
                type = "message.updated"
            case .delete:
                try tx.collection(messages).updateOne(["_id": .string(messageID)], ["$set": ["text": .null, "deleted": .bool(true), "deletedAt": .date(now)]])
                // The list preview must not keep showing deleted text.
                if isLast {
                    try tx.collection(previews).updateOne(["_id": .string(conversationID)],
                                                          ["$set": ["lastMessage.text": .null, "lastMessage.deleted": .bool(true)]])
                }
                m.text = nil
                m.deleted = true
                type = "message.deleted"
            }
            let frame = ServerFrame.event(type: type, fields: ["message": .object(m.json)]).encoded()
            let f = Fanout(conversationID: conversationID, recipients: conversation.members, exclude: nil, seq: nil, frame: frame)
            try tx.collection(events).insertOne(eventDocument(f, origin: origin, now: now))
            return (m, f)
        }
    }

    public struct Page: Sendable {
        public let messages: [ChatMessage]
        public let hasMore: Bool
    }

    /// A page by sequence: before/after a seq, or the newest. Returned in ascending seq order. At most
    /// `maxBytes` of encoded messages (at least one): the messages nearest the starting point are kept
    /// and `hasMore` says the rest follows.
    public static func history(_ me: String, _ q: HistoryQuery, maxBytes: Int = PageBudget.maxPageBytes, on c: MongoConnection) throws -> Page {
        _ = try member(me, of: q.conversationID, on: c)
        var filter: BSONDocument = ["conversationId": .string(q.conversationID)]
        let ascending = q.after != nil
        if let before = q.before { filter["seq"] = ["$lt": .int64(before)] }
        if let after = q.after { filter["seq"] = ["$gt": .int64(after)] }
        let docs = try c.collection(messages).find(filter, sort: ["seq": .int32(ascending ? 1 : -1)], limit: q.limit + 1)
        let found = try withSenderState(docs.prefix(q.limit).compactMap(message), on: c)
        var budget = PageBudget(bytes: maxBytes)
        var list = Array(found.prefix { budget.take(PageBudget.size(of: $0.json)) })
        if !ascending { list.reverse() }
        return Page(messages: list, hasMore: docs.count > q.limit || list.count < found.count)
    }

    public struct SyncResult: Sendable {
        public let conversation: Conversation
        public let page: Page
    }

    public struct SyncPage: Sendable {
        public let results: [SyncResult]
        /// The byte bound cut the reply before conversations that have news: sync again.
        public let hasMore: Bool
    }

    /// Catch-up after a reconnect: for each of the user's conversations, what came after the position
    /// the client has (0 for conversations it does not know), in order, `limit` at most per conversation,
    /// and `maxBytes` of conversations and messages at most in all (the first entry always carries at
    /// least one message).
    public static func sync(_ me: String, positions: [String: Int64], limit: Int, maxBytes: Int = PageBudget.maxPageBytes,
                            on c: MongoConnection) throws -> SyncPage {
        let docs = try documents(activity(of: me, on: c).prefix(500).map(\.id), on: c)
        var out: [SyncResult] = []
        var budget = PageBudget(bytes: maxBytes)
        var full = false
        for doc in docs {
            guard let conversation = decode(doc) else { continue }
            let position = positions[conversation.id] ?? 0
            guard conversation.lastSeq > position else { continue }
            if full { return SyncPage(results: out, hasMore: true) }
            let found = try c.collection(messages).find(["conversationId": .string(conversation.id), "seq": ["$gt": .int64(position)]],
                                                        sort: ["seq": .int32(1)], limit: limit + 1)
            let list = try withSenderState(found.prefix(limit).compactMap(message), on: c)
            guard let first = list.first else { continue }
            // The entry with its first message, as one item: an entry without messages is not sent.
            var entry = budget
            let header = PageBudget.size(of: ["conversation": .object(conversation.json), "messages": .array([]), "hasMore": .bool(true)])
            guard entry.take(header + PageBudget.size(of: first.json)) else { return SyncPage(results: out, hasMore: true) }
            let kept = [first] + list.dropFirst().prefix { entry.take(PageBudget.size(of: $0.json)) }
            budget = entry
            out.append(SyncResult(conversation: conversation, page: Page(messages: kept, hasMore: found.count > limit || kept.count < list.count)))
            full = kept.count < list.count
        }
        return SyncPage(results: out, hasMore: false)
    }

    /// Stores "read up to seq" (never backwards) and tells the other members.
    public static func markRead(_ me: String, conversationID: String, seq: Int64, origin: String, now: Date, on c: MongoConnection) throws -> (Int64, Fanout) {
        try c.withTransaction { tx in
            let conversation = try member(me, of: conversationID, withHead: true, on: tx)
            let capped = min(seq, conversation.lastSeq)
            try tx.collection(reads).updateOne(["_id": .string(conversationID + "|" + me)], [
                "$max": ["seq": .int64(capped)],
                "$set": ["conversationId": .string(conversationID), "userId": .string(me), "updatedAt": .date(now)],
            ], upsert: true)
            let stored = try tx.collection(reads).findOne(["_id": .string(conversationID + "|" + me)])?["seq"]?.int64Value ?? capped
            let frame = ServerFrame.event(type: "read", fields: [
                "conversationId": .string(conversationID), "userId": .string(me), "seq": .int(stored),
            ]).encoded()
            let f = Fanout(conversationID: conversationID, recipients: conversation.members, exclude: nil, seq: nil, frame: frame)
            try tx.collection(events).insertOne(eventDocument(f, origin: origin, now: now))
            return (stored, f)
        }
    }

    /// A typing signal: checked for membership, carried to other instances by the event transport,
    /// never kept (the event expires with the others).
    public static func typing(_ me: String, conversationID: String, expiresInMs: Int, origin: String, now: Date, on c: MongoConnection) throws -> Fanout {
        let conversation = try member(me, of: conversationID, on: c)
        let frame = ServerFrame.event(type: "typing", fields: [
            "conversationId": .string(conversationID), "userId": .string(me), "expiresInMs": .int(Int64(expiresInMs)),
        ]).encoded()
        let f = Fanout(conversationID: conversationID, recipients: conversation.members, exclude: me, seq: nil, frame: frame)
        try c.collection(events).insertOne(eventDocument(f, origin: origin, now: now))
        return f
    }

    /// The user's conversations by latest activity (ties: id descending): the conversations' and
    /// their heads' `updatedAt`, merged here (no index serves the order: the `members` lookup reads
    /// all of a user's conversations either way).
    static func activity(of me: String, on c: MongoConnection) throws -> [(id: String, at: Date)] {
        let own = try c.collection(conversations).find(["members": .string(me)], projection: ["updatedAt": .int32(1)],
                                                       hint: ["members": .int32(1)])
        var at: [String: Date] = [:]
        for doc in own { if let id = doc["_id"]?.stringValue { at[id] = doc["updatedAt"]?.dateValue ?? Date(timeIntervalSince1970: 0) } }
        guard !at.isEmpty else { return [] }
        for head in try c.collection(heads).find(["_id": ["$in": .array(at.keys.map { .string($0) })]], projection: ["updatedAt": .int32(1)]) {
            if let id = head["_id"]?.stringValue, let t = head["updatedAt"]?.dateValue, t > at[id] ?? t { at[id] = t }
        }
        return at.map { (id: $0.key, at: $0.value) }.sorted { $0.at != $1.at ? $0.at > $1.at : $0.id > $1.id }
    }

    /// Conversation documents with their heads, in the order of `ids`.
    static func documents(_ ids: [String], on c: MongoConnection) throws -> [BSONDocument] {
        guard !ids.isEmpty else { return [] }
        var byID: [String: BSONDocument] = [:]
        for doc in try withHeads(c.collection(conversations).find(["_id": ["$in": .array(ids.map { .string($0) })]]), on: c) {
            if let id = doc["_id"]?.stringValue { byID[id] = doc }
        }
        return ids.compactMap { byID[$0] }
    }

    // MARK: mapping

    /// The fan-outs an `events` record carries (several messages of one conversation share one record,
    /// so the recipient list is stored once per batch, not once per message).
    public static func fanouts(fromEvent doc: BSONDocument) -> (origin: String, [Fanout])? {
        guard let origin = doc["origin"]?.stringValue, let conversation = doc["conversationId"]?.stringValue,
              let frames = doc["frames"]?.arrayValue, let recipients = doc["recipients"]?.arrayValue else { return nil }
        let members = recipients.compactMap(\.stringValue)
        let seqs = doc["seqs"]?.arrayValue
        let exclude = doc["exclude"]?.stringValue
        return (origin, frames.enumerated().compactMap { i, frame in
            frame.stringValue.map { Fanout(conversationID: conversation, recipients: members, exclude: exclude,
                                           seq: seqs?[i].int64Value, frame: Array($0.utf8)) }
        })
    }

    static func eventDocument(_ f: Fanout, origin: String, now: Date) -> BSONDocument {
        eventDocument([f], origin: origin, now: now)
    }

    static func eventDocument(_ batch: [Fanout], origin: String, now: Date) -> BSONDocument {
        let first = batch[0]
        var doc: BSONDocument = [
            "conversationId": .string(first.conversationID), "recipients": .array(first.recipients.map { .string($0) }),
            "frames": .array(batch.map { .string(String(decoding: $0.frame, as: UTF8.self)) }), "origin": .string(origin),
            "expireAt": .date(now.addingTimeInterval(eventRetention)),
        ]
        if let exclude = first.exclude { doc["exclude"] = .string(exclude) }
        if first.seq != nil { doc["seqs"] = .array(batch.map { .int64($0.seq ?? 0) }) }
        return doc
    }

    static func announce(_ conversation: Conversation, to audience: [String]? = nil, origin: String, now: Date,
                         on c: MongoConnection) throws -> Fanout {
        let frame = ServerFrame.event(type: "conversation", fields: ["conversation": .object(conversation.json)]).encoded()
        let f = Fanout(conversationID: conversation.id, recipients: audience ?? conversation.members, exclude: nil, seq: nil, frame: frame)
        try c.collection(events).insertOne(eventDocument(f, origin: origin, now: now))
        return f
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

    /// The conversation, when `me` is a member; else not found (unknown) or forbidden.
    /// `withHead`: with its `lastSeq`, `lastMessage` and latest `updatedAt` (one more read).
    static func member(_ me: String, of id: String, withHead: Bool = false, on c: MongoConnection) throws -> Conversation {
        try memberDocument(me, of: id, withHead: withHead, on: c).conversation
    }

    /// The conversation and its stored document (for fields the domain type leaves out, such as
    /// `lastMessage`), once `me` is known to be a member.
    static func memberDocument(_ me: String, of id: String, withHead: Bool, on c: MongoConnection)
        throws -> (conversation: Conversation, document: BSONDocument, hasHead: Bool) {
        guard var doc = try c.collection(conversations).findOne(["_id": .string(id)]) else { throw ChatError.notFound("no conversation \(id)") }
        var hasHead = false
        if withHead, let head = try c.collection(heads).findOne(["_id": .string(id)]) {
            doc = merged(doc, head: head)
            hasHead = true
        }
        guard let conversation = decode(doc) else { throw ChatError.notFound("no conversation \(id)") }
        guard conversation.members.contains(me) else { throw ChatError.forbidden("not a member of \(id)") }
        return (conversation, doc, hasHead)
    }

    /// The conversation documents with their heads' fields: `lastSeq` and `lastMessage` from the head
    /// when there is one (a conversation without messages, or stored before heads, has none), and
    /// the later `updatedAt` (a group change moves the conversation's, a message the head's).
    static func withHeads(_ docs: [BSONDocument], on c: MongoConnection) throws -> [BSONDocument] {
        let ids = docs.compactMap { $0["_id"] }
        guard !ids.isEmpty else { return docs }
        var byID: [String: BSONDocument] = [:]
        for head in try c.collection(heads).find(["_id": ["$in": .array(ids)]]) {
            if let id = head["_id"]?.stringValue { byID[id] = head }
        }
        return docs.map { doc in doc["_id"]?.stringValue.flatMap { byID[$0] }.map { merged(doc, head: $0) } ?? doc }
    }

    static func merged(_ doc: BSONDocument, head: BSONDocument) -> BSONDocument {
        var out = doc
        if let seq = head["lastSeq"] { out["lastSeq"] = seq }
        if let last = head["lastMessage"] { out["lastMessage"] = last }
        if let at = head["updatedAt"]?.dateValue, at > (doc["updatedAt"]?.dateValue ?? .distantPast) { out["updatedAt"] = .date(at) }
        return out
    }

    static func requireUsers(_ ids: [String], on c: MongoConnection) throws {
        guard !ids.isEmpty else { return }
        let found = try c.collection(UserStore.users).find(["clerkId": ["$in": .array(ids.map { .string($0) })], "deleted": ["$ne": .bool(true)]],
                                                           projection: ["clerkId": .int32(1)], hint: UserStore.byClerkID)
        let known = Set(found.compactMap { $0["clerkId"]?.stringValue })
        if let missing = ids.first(where: { !known.contains($0) }) { throw ChatError.notFound("no user \(missing)") }
    }

    static func decode(_ doc: BSONDocument) -> Conversation? {
        guard let id = doc["_id"]?.stringValue, let kind = doc["kind"]?.stringValue.flatMap(Conversation.Kind.init) else { return nil }
        return Conversation(id: id, kind: kind, name: doc["name"]?.stringValue,
                            members: doc["members"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                            lastSeq: doc["lastSeq"]?.int64Value ?? 0, updatedAt: doc["updatedAt"]?.dateValue ?? Date(timeIntervalSince1970: 0))
    }

    static func document(_ m: ChatMessage) -> BSONDocument {
        ["_id": .string(m.id), "conversationId": .string(m.conversationID), "seq": .int64(m.seq), "senderId": .string(m.senderID),
         "clientId": .string(m.clientID), "text": .string(m.text), "createdAt": .date(m.createdAt), "deleted": .bool(false)]
    }

    static func message(_ doc: BSONDocument) -> ChatMessage? {
        guard let id = doc["_id"]?.stringValue, let conversation = doc["conversationId"]?.stringValue,
              let seq = doc["seq"]?.int64Value, let sender = doc["senderId"]?.stringValue else { return nil }
        return ChatMessage(id: id, conversationID: conversation, seq: seq, senderID: sender, clientID: doc["clientId"]?.stringValue ?? "",
                           text: doc["text"]?.stringValue, createdAt: doc["createdAt"]?.dateValue ?? Date(timeIntervalSince1970: 0),
                           editedAt: doc["editedAt"]?.dateValue, deleted: doc["deleted"]?.boolValue ?? false)
    }

    /// Marks messages whose sender was deleted in Clerk ("deleted user").
    static func withSenderState(_ list: [ChatMessage], on c: MongoConnection) throws -> [ChatMessage] {
        let senders = Set(list.map(\.senderID))
        guard !senders.isEmpty else { return list }
        let deleted = try c.collection(UserStore.users).find(["clerkId": ["$in": .array(senders.map { .string($0) })], "deleted": .bool(true)],
                                                             projection: ["clerkId": .int32(1)], hint: UserStore.byClerkID)
        let gone = Set(deleted.compactMap { $0["clerkId"]?.stringValue })
        return gone.isEmpty ? list : list.map { var m = $0; m.senderDeleted = gone.contains(m.senderID); return m }
    }
}
