import ChatDomain
import Foundation

/// Messages: the group-commit write path, edits and deletes, history and catch-up.
extension ChatStore {
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

    /// What a committed batch knows about a conversation, so that the next batch into it need not read
    /// its document: its members as of that commit, and its head's `rev` (moved by every change of
    /// members). Its `lastSeq` is only informative: a batch takes the counter from the head.
    public struct KnownConversation: Sendable, Equatable {
        public let conversation: Conversation
        public let rev: Int64?
        public init(conversation: Conversation, rev: Int64?) {
            self.conversation = conversation
            self.rev = rev
        }
    }

    public struct BatchOutcome: Sendable {
        public var results: [SendResult]
        public var fanouts: [Fanout]
        /// The conversations written, as this commit left them.
        public var known: [String: KnownConversation]
        /// Conversations written without reading their documents (members from `known`, rev unchanged).
        public var unread = 0
    }

    /// Stores many senders' messages in one transaction, whatever the number of conversations: one
    /// read of their heads, one of the conversations not in `known`, one bulk of head updates (the
    /// sequence counters), one insert of the messages, one of their `events` record (one for the
    /// batch, unless it is very large), and the commit. The sequence is gap-free because counters and
    /// messages commit together.
    ///
    /// `known` is what earlier batches of this process committed: a conversation whose head still
    /// carries the `rev` remembered (every change of members moves it) keeps the members remembered,
    /// and its document (up to 1,000 member ids) is not read again. Every filter is `_id` alone: the
    /// embedded database scans the whole collection for any other field.
    ///
    /// A resend of a stored client id is rare (a lost ack), so the first try does not look for earlier
    /// sends: the unique (conversation, sender, clientId) index refuses a duplicate, and the retry
    /// (which looks up earlier sends, one read per conversation and sender) finds it and returns its
    /// ack. The unique (conversation, seq) index likewise refuses sequence numbers a concurrent writer
    /// took first. Both, and write conflicts, are retried in `withTransaction`'s one loop, within
    /// `retry`; past it the batch fails with `DatabaseError.busy`.
    public static func sendBatch(_ sends: [PendingSend], known: [String: KnownConversation] = [:], origin: String, now: Date,
                                 retry: RetryPolicy = .standard, on c: MongoConnection) throws -> BatchOutcome {
        try c.withTransaction(retry: retry, alsoRetry: { if case .duplicateKey = $0 { return true } else { return false } }) { tx, attempt in
            let ids = Set(sends.map(\.conversationID)).sorted()
            let headOf = try headsByID(ids, on: tx)
            var state: [String: KnownConversation] = [:]
            var trusted: Set<String> = []
            for id in ids {
                // Members remembered are good while the head's rev has not moved and knows every sender.
                guard let k = known[id], let head = headOf[id], let lastSeq = head["lastSeq"]?.int64Value,
                      k.rev == head["rev"]?.int64Value,
                      sends.allSatisfy({ $0.conversationID != id || k.conversation.members.contains($0.senderID) }) else { continue }
                var conversation = k.conversation
                conversation.lastSeq = lastSeq
                state[id] = KnownConversation(conversation: conversation, rev: k.rev)
                trusted.insert(id)
            }
            let toRead = ids.filter { state[$0] == nil }
            if !toRead.isEmpty {
                for doc in try tx.collection(conversations).find(["_id": ["$in": .array(toRead.map { .string($0) })]]) {
                    guard let id = doc["_id"]?.stringValue, let conv = decode(headOf[id].map { merged(doc, head: $0) } ?? doc) else { continue }
                    state[id] = KnownConversation(conversation: conv, rev: headOf[id]?["rev"]?.int64Value)
                }
            }

            var earlier: [String: ChatMessage] = [:]
            if attempt > 1 {
                // One lookup per (conversation, sender) on the unique index: equality prefixes the
                // embedded database can serve from it.
                let groups = Dictionary(grouping: sends) { [$0.conversationID, $0.senderID] }
                for (key, group) in groups.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
                    let clientIDs = Set(group.map(\.clientID))
                    let found = try tx.collection(messages).find([
                        "conversationId": .string(key[0]), "senderId": .string(key[1]),
                        "clientId": ["$in": .array(clientIDs.map { .string($0) })],
                    ])
                    for doc in found { if let m = message(doc) { earlier[m.conversationID + "\u{0}" + m.senderID + "\u{0}" + m.clientID] = m } }
                }
            }

            var results = [SendResult?](repeating: nil, count: sends.count)
            var fresh: [String: [ChatMessage]] = [:]
            var next: [String: Int64] = [:]
            for (i, send) in sends.enumerated() {
                guard let conversation = state[send.conversationID]?.conversation else {
                    results[i] = .failed(.notFound("no conversation \(send.conversationID)"))
                    continue
                }
                guard conversation.members.contains(send.senderID) else {
                    results[i] = .failed(.forbidden("not a member of \(send.conversationID)"))
                    continue
                }
                let key = send.conversationID + "\u{0}" + send.senderID + "\u{0}" + send.clientID
                if let stored = earlier[key] { results[i] = .stored(stored, fresh: false); continue }
                let seq = (next[send.conversationID] ?? conversation.lastSeq) + 1
                next[send.conversationID] = seq
                let m = ChatMessage(id: "m_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased(),
                                    conversationID: send.conversationID, seq: seq, senderID: send.senderID,
                                    clientID: send.clientID, text: send.text, createdAt: now)
                earlier[key] = m
                fresh[send.conversationID, default: []].append(m)
                results[i] = .stored(m, fresh: true)
            }
            let outcomes = results.map { $0 ?? .failed(.invalid("not processed")) }
            guard !fresh.isEmpty else { return BatchOutcome(results: outcomes, fanouts: [], known: [:]) }

            // The head is set, not incremented: a conversation stored before heads existed goes on
            // from the conversation's own lastSeq. A concurrent writer conflicts on the head (or on
            // inserting it: duplicate _id), and the unique (conversation, seq) index refuses its seqs.
            let order = fresh.keys.sorted()
            let counters: [(filter: BSONDocument, update: BSONDocument)] = order.map { id in
                let last = fresh[id]!.last!
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
            try tx.collection(messages).insertMany(order.flatMap { fresh[$0]!.map(document) })
            let batches = order.map { id in
                fresh[id]!.map { Fanout(.message($0), recipients: state[id]!.conversation.members) }
            }
            try tx.collection(events).insertMany(batchEventDocuments(batches, origin: origin, now: now))
            var left: [String: KnownConversation] = [:]
            for id in order {
                var conversation = state[id]!.conversation
                conversation.lastSeq = fresh[id]!.last!.seq
                left[id] = KnownConversation(conversation: conversation, rev: state[id]!.rev)
            }
            return BatchOutcome(results: outcomes, fanouts: batches.flatMap { $0 }, known: left,
                                unread: order.filter(trusted.contains).count)
        }
    }

    public enum MessageChange: Sendable { case edit(String), delete }

    /// Edits or deletes one's own message; members get the latest state.
    public static func change(_ me: String, conversationID: String, messageID: String, _ change: MessageChange,
                              origin: String, now: Date, on c: MongoConnection) throws -> (ChatMessage, Fanout) {
        try c.withTransaction { tx in
            let (conversation, stored, hasHead) = try memberDocument(me, of: conversationID, withHead: true, on: tx)
            let previews = hasHead ? heads : conversations   // where this conversation's lastMessage lives
            guard let doc = try tx.collection(messages).findOne(["_id": .string(messageID)]),
                  doc["conversationId"]?.stringValue == conversationID,
                  var m = message(doc) else { throw ChatError.notFound("no message \(messageID)") }
            guard m.senderID == me else { throw ChatError.forbidden("only the sender can change a message") }
            guard !m.deleted else { throw ChatError.notFound("message \(messageID) was deleted") }
            // The list preview follows the change only when this is the last message.
            let isLast = stored["lastMessage"]?.documentValue?["messageId"]?.stringValue == messageID
            let event: ConversationEvent
            switch change {
            case .edit(let text):
                try tx.collection(messages).updateOne(["_id": .string(messageID)], ["$set": ["text": .string(text), "editedAt": .date(now)]])
                if isLast {
                    try tx.collection(previews).updateOne(["_id": .string(conversationID)],
                                                          ["$set": ["lastMessage.text": .string(String(text.prefix(200)))]])
                }
                m.text = text
                m.editedAt = now
                event = .messageUpdated(m)
            case .delete:
                try tx.collection(messages).updateOne(["_id": .string(messageID)], ["$set": ["text": .null, "deleted": .bool(true), "deletedAt": .date(now)]])
                // The list preview must not keep showing deleted text.
                if isLast {
                    try tx.collection(previews).updateOne(["_id": .string(conversationID)],
                                                          ["$set": ["lastMessage.text": .null, "lastMessage.deleted": .bool(true)]])
                }
                m.text = nil
                m.deleted = true
                event = .messageDeleted(m)
            }
            return (m, try record(Fanout(event, recipients: conversation.members), origin: origin, now: now, on: tx))
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
        let found = try UserStore.markingDeletedSenders(docs.prefix(q.limit).compactMap(message), on: c)
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
            let list = try UserStore.markingDeletedSenders(found.prefix(limit).compactMap(message), on: c)
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
}
