import ChatDomain
import ClerkAuth
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// An authenticated connection's requests (service thread): each becomes a store call on a database
/// worker, answered with `ok` or the protocol's `error` once it returns; what members must hear about
/// goes to the broker. Sends are group-committed by the batcher.
final class ChatRequestHandler {
    private let loop: ServiceLoop
    private let database: Database
    private let settings: ChannelSettings
    private let instanceID: String
    private let presence: PresenceService
    private let broker: EventBroker
    private let logger: Logger
    let batcher: MessageBatcher

    init(loop: ServiceLoop, database: Database, settings: ChannelSettings, instanceID: String,
         presence: PresenceService, broker: EventBroker, logger: Logger) {
        self.loop = loop
        self.database = database
        self.settings = settings
        self.instanceID = instanceID
        self.presence = presence
        self.broker = broker
        self.logger = logger
        batcher = MessageBatcher(loop: loop, database: database, maxBatch: settings.maxBatch, instanceID: instanceID,
                                 logger: logger, deliver: broker.deliver)
    }

    var isIdle: Bool { batcher.isIdle }

    /// The byte bound of a `history`, `sync` or `conversations.list` page on this server.
    var pageBytes: Int { PageBudget.pageBytes(outboundLimit: settings.maxOutboundBytes) }

    func handle(_ session: ChatSession, _ claims: SessionClaims, _ frame: ClientFrame) {
        let me = claims.userID
        let id = frame.id
        let origin = instanceID
        switch frame.request {
        case .presenceSubscribe(let users):
            presence.subscribe(session, to: users) { [logger] result in
                guard !session.isClosed else { return }
                switch result {
                case .success(let all): session.send(.ok(id: id, data: ["users": .array(all.map { .object($0.json) })]))
                case .failure(let error): session.fail(id, RequestFailure(error, operation: "presence_snapshot", logger: logger))
                }
            }
        case .presenceUnsubscribe(let users):
            presence.unsubscribe(session, from: users)
            session.send(.ok(id: id, data: [:]))
        case .usersQuery(let query):
            respond(session, id, "users_query", { c in try UserStore.directory(query, on: c) }) { users in
                let next: JSONValue = users.count == query.limit ? .string(users.last?.userID ?? "") : .null
                return ["users": .array(users.map { .object($0.json) }), "next": next]
            }
        case .openDirect(let other):
            respond(session, id, "conversation_direct", { c in try ChatStore.openDirect(me, with: other, origin: origin, now: Date(), on: c) }) { [broker] in
                if let f = $0.1 { broker.deliver(f) }
                return ["conversation": .object($0.0.json)]
            }
        case .createGroup(let name, let members):
            respond(session, id, "conversation_create", { c in
                try ChatStore.createGroup(me, name: name, members: members, origin: origin, now: Date(), on: c)
            }) { [broker] in broker.deliver($0.1); return ["conversation": .object($0.0.json)] }
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
            respond(session, id, "conversations_list", { c in try ChatStore.list(me, limit: limit, before: before, on: c) }) { page in
                let all: [[String: JSONValue]] = page.conversations.map { item in
                    var o = item.conversation.json
                    o["unread"] = .int(item.unread)
                    o["reads"] = .object(item.reads.mapValues { .int($0) })
                    o["lastMessage"] = item.lastMessage.map { .object($0.json) } ?? .null
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
                return session.fail(id, error.code, error.message)
            }
            batcher.enqueue(.init(session: session, requestID: id,
                                  send: .init(conversationID: conversation, senderID: me, clientID: clientID, text: text)))
        case .edit(let conversation, let messageID, let text):
            do { try ChatRules.validateText(text, maxBytes: settings.maxTextBytes) } catch {
                return session.fail(id, error.code, error.message)
            }
            changeMessage(session, id, me, conversation, messageID, .edit(text))
        case .delete(let conversation, let messageID):
            changeMessage(session, id, me, conversation, messageID, .delete)
        case .history(let query):
            let maxBytes = pageBytes
            respond(session, id, "history", { c in try ChatStore.history(me, query, maxBytes: maxBytes, on: c) }) { page in
                ["conversationId": .string(query.conversationID), "messages": .array(page.messages.map { .object($0.json) }),
                 "hasMore": .bool(page.hasMore)]
            }
        case .sync(let positions, let limit):
            let maxBytes = pageBytes
            respond(session, id, "sync", { c in try ChatStore.sync(me, positions: positions, limit: limit, maxBytes: maxBytes, on: c) }) { sync in
                ["conversations": .array(sync.results.map { r in
                    .object(["conversation": .object(r.conversation.json), "messages": .array(r.page.messages.map { .object($0.json) }),
                             "hasMore": .bool(r.page.hasMore)])
                }), "hasMore": .bool(sync.hasMore)]
            }
        case .read(let conversation, let seq):
            respond(session, id, "read", { c in
                try ChatStore.markRead(me, conversationID: conversation, seq: seq, origin: origin, now: Date(), on: c)
            }) { [broker] in
                broker.deliver($0.1)
                return ["conversationId": .string(conversation), "seq": .int($0.0)]
            }
        case .typing(let conversation):
            // At most one signal per conversation every 2 s per connection; extra ones are dropped.
            let now = Date()
            if let last = session.lastTyping[conversation], now.timeIntervalSince(last) < 2 {
                return session.send(.ok(id: id, data: ["sent": .bool(false)]))
            }
            session.lastTyping[conversation] = now
            respond(session, id, "typing", { c in
                try ChatStore.typing(me, conversationID: conversation, expiresInMs: 5000, origin: origin, now: now, on: c)
            }) { [broker] in broker.deliver($0); return ["sent": .bool(true)] }
        case .auth, .refresh, .ping:
            break   // the channel's
        }
    }

    private func changeGroup(_ session: ChatSession, _ id: String?, _ me: String, _ conversation: String, _ change: ChatStore.GroupChange) {
        let origin = instanceID
        respond(session, id, "conversation_change", { c in
            try ChatStore.changeGroup(me, conversation, change, origin: origin, now: Date(), on: c)
        }) { [broker] in broker.deliver($0.1); return ["conversation": .object($0.0.json)] }
    }

    private func changeMessage(_ session: ChatSession, _ id: String?, _ me: String, _ conversation: String, _ messageID: String,
                               _ change: ChatStore.MessageChange) {
        let origin = instanceID
        respond(session, id, "message_change", { c in
            try ChatStore.change(me, conversationID: conversation, messageID: messageID, change, origin: origin, now: Date(), on: c)
        }) { [broker] in broker.deliver($0.1); return ["message": .object($0.0.json)] }
    }

    /// Runs a store call on a worker; on the service thread, `reply` builds the `ok` data (and fans out
    /// what was stored, even when the asking connection is gone meanwhile).
    private func respond<T: Sendable>(_ session: ChatSession, _ id: String?, _ operation: String,
                                      _ work: @escaping @Sendable (MongoConnection) throws -> T,
                                      reply: @escaping (T) -> [String: JSONValue]) {
        database.submit(operation, on: loop, work) { [logger] result in
            switch result {
            case .success(let value):
                let data = reply(value)
                if !session.isClosed { session.send(.ok(id: id, data: data)) }
            case .failure(let error):
                if !session.isClosed { session.fail(id, RequestFailure(error, operation: operation, logger: logger)) }
            }
        }
    }
}
