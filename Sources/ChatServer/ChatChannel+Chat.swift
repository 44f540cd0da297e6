import ChatDomain
import ClerkAuth
import Foundation
import Logging
import MongoStore
import WebSocketServer

/// The chat half of the channel: conversations, messages, history, read state, typing.
extension ChatChannel {
    func handleChat(_ session: ChatSession, _ claims: SessionClaims, _ frame: ClientFrame) {
        let me = claims.userID
        let id = frame.id
        let origin = instanceID
        switch frame.request {
        case .openDirect(let other):
            chatJob(session, id, "conversation_direct", { c in try ChatStore.openDirect(me, with: other, origin: origin, now: Date(), on: c) }) { [self] in
                if let f = $0.1 { deliver(f) }
                return ["conversation": .object($0.0.json)]
            }
        case .createGroup(let name, let members):
            chatJob(session, id, "conversation_create", { c in
                try ChatStore.createGroup(me, name: name, members: members, origin: origin, now: Date(), on: c)
            }) { [self] in deliver($0.1); return ["conversation": .object($0.0.json)] }
        case .renameGroup(let conversation, let name):
            changeGroup(session, id, me, conversation, .rename(name))
        case .addMembers(let conversation, let users):
            changeGroup(session, id, me, conversation, .add(users))
        case .removeMember(let conversation, let user):
            changeGroup(session, id, me, conversation, .remove(user))
        case .leave(let conversation):
            changeGroup(session, id, me, conversation, .leave)
        case .listConversations(let limit, let before):
            let maxBytes = pageBytes
            chatJob(session, id, "conversations_list", { c in try ChatStore.list(me, limit: limit, before: before, on: c) }) { page in
                let all: [[String: JSONValue]] = page.conversations.map { item in
                    var o = item.conversation.json
                    o["unread"] = .int(item.unread)
                    o["reads"] = .object(item.reads.mapValues { .int($0) })
                    o["lastMessage"] = item.lastMessage.map { m in
                        var preview = Dictionary(uniqueKeysWithValues: m.fields.map { ($0.0, Self.json($0.1)) })
                        preview["deleted"] = preview["deleted"] ?? .bool(false)   // stored before the field was
                        return .object(preview)
                    } ?? .null
                    return o
                }
                // Cut at the page's byte bound (large groups carry every member): the next page starts
                // after the last conversation sent.
                var budget = PageBudget(bytes: maxBytes)
                let kept = all.prefix { budget.take(PageBudget.size(of: $0)) }
                var next = page.next
                if kept.count < all.count {
                    let last = page.conversations[kept.count - 1].conversation
                    next = ConversationCursor(updatedAt: last.updatedAt, conversationID: last.id)
                }
                return ["next": next.map { .string($0.text) } ?? .null, "conversations": .array(kept.map { .object($0) })]
            }
        case .send(let conversation, let clientID, let text):
            do { try ChatRules.validateText(text, maxBytes: settings.maxTextBytes) } catch {
                session.fail(id, error.code, error.message)
                return
            }
            batcher.enqueue(.init(session: session, requestID: id,
                                  send: .init(conversationID: conversation, senderID: me, clientID: clientID, text: text)))
        case .edit(let conversation, let messageID, let text):
            do { try ChatRules.validateText(text, maxBytes: settings.maxTextBytes) } catch {
                session.fail(id, error.code, error.message)
                return
            }
            changeMessage(session, id, me, conversation, messageID, .edit(text))
        case .delete(let conversation, let messageID):
            changeMessage(session, id, me, conversation, messageID, .delete)
        case .history(let query):
            let maxBytes = pageBytes
            chatJob(session, id, "history", { c in try ChatStore.history(me, query, maxBytes: maxBytes, on: c) }) { page in
                ["conversationId": .string(query.conversationID), "messages": .array(page.messages.map { .object($0.json) }),
                 "hasMore": .bool(page.hasMore)]
            }
        case .sync(let positions, let limit):
            let maxBytes = pageBytes
            chatJob(session, id, "sync", { c in try ChatStore.sync(me, positions: positions, limit: limit, maxBytes: maxBytes, on: c) }) { sync in
                ["conversations": .array(sync.results.map { r in
                    .object(["conversation": .object(r.conversation.json), "messages": .array(r.page.messages.map { .object($0.json) }),
                             "hasMore": .bool(r.page.hasMore)])
                }), "hasMore": .bool(sync.hasMore)]
            }
        case .read(let conversation, let seq):
            chatJob(session, id, "read", { c in try ChatStore.markRead(me, conversationID: conversation, seq: seq, origin: origin, now: Date(), on: c) }) { [self] in
                deliver($0.1)
                return ["conversationId": .string(conversation), "seq": .int($0.0)]
            }
        case .typing(let conversation):
            // At most one signal per conversation every 2 s per connection; extra ones are dropped.
            let now = Date()
            if let last = session.lastTyping[conversation], now.timeIntervalSince(last) < 2 {
                session.send(.ok(id: id, data: ["sent": .bool(false)]))
                return
            }
            session.lastTyping[conversation] = now
            chatJob(session, id, "typing", { c in
                try ChatStore.typing(me, conversationID: conversation, expiresInMs: 5000, origin: origin, now: now, on: c)
            }) { [self] in deliver($0); return ["sent": .bool(true)] }
        default:
            break
        }
    }

    /// The byte bound of a `history`, `sync` or `conversations.list` page on this server.
    var pageBytes: Int { PageBudget.pageBytes(outboundLimit: settings.maxOutboundBytes) }

    private func changeGroup(_ session: ChatSession, _ id: String?, _ me: String, _ conversation: String, _ change: ChatStore.GroupChange) {
        let origin = instanceID
        chatJob(session, id, "conversation_change", { c in
            try ChatStore.changeGroup(me, conversation, change, origin: origin, now: Date(), on: c)
        }) { [self] in deliver($0.1); return ["conversation": .object($0.0.json)] }
    }

    private func changeMessage(_ session: ChatSession, _ id: String?, _ me: String, _ conversation: String, _ messageID: String,
                               _ change: ChatStore.MessageChange) {
        let origin = instanceID
        chatJob(session, id, "message_change", { c in
            try ChatStore.change(me, conversationID: conversation, messageID: messageID, change, origin: origin, now: Date(), on: c)
        }) { [self] in deliver($0.1); return ["message": .object($0.0.json)] }
    }

    /// A database job for a chat request: `reply` builds the ok data on the service thread.
    func chatJob<T>(_ session: ChatSession, _ id: String?, _ operation: String, _ job: @escaping (MongoConnection) throws -> T,
                    reply: @escaping (T) -> [String: JSONValue]) {
        database.submit(operation, job) { [post, logger] result in
            post {
                guard !session.isClosed else {
                    if case .success(let value) = result { _ = reply(value) }   // still fan out what was stored
                    return
                }
                switch result {
                case .success(let value): session.send(.ok(id: id, data: reply(value)))
                case .failure(let error): Self.report(error, to: session, id: id, logger: logger)
                }
            }
        }
    }

    static func report(_ error: Error, to session: ChatSession, id: String?, logger: Logger) {
        switch error {
        case ChatStore.ChatError.notFound(let m): session.fail(id, .notFound, m)
        case ChatStore.ChatError.forbidden(let m): session.fail(id, .forbidden, m)
        case ChatStore.ChatError.invalid(let m): session.fail(id, .badRequest, m)
        case let e as DatabaseError where e.isUnavailable: session.fail(id, .unavailable, "database unavailable, retry")
        default:
            logger.error("chat request failed", metadata: ["error": "\(error)"])
            session.fail(id, .internalError, "internal error")
        }
    }

    /// Sends a fan-out to this instance's connections of its recipients, in sequence order for messages.
    /// The frame is encoded once; every connection queues the same bytes.
    func deliver(_ fanout: ChatStore.Fanout) {
        guard let seq = fanout.seq else { return send(fanout) }
        for ready in gate.accept(conversation: fanout.conversationID, seq: seq, item: fanout, now: Date()) { send(ready) }
    }

    func send(_ fanout: ChatStore.Fanout) {
        let frame = OutboundFrame(fanout.frame)
        for user in fanout.recipients where user != fanout.exclude {
            for sessionID in sessionsByUser[user] ?? [] { sessions[sessionID]?.connection.send(frame) }
        }
    }
}
