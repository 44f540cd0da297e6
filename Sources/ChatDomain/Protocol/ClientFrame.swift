import Foundation

/// A request from a client: `{"type": "...", "id": "<correlation id, optional>", ...}`.
public struct ClientFrame: Equatable, Sendable {
    public let id: String?
    public let request: ClientRequest

    public init(id: String?, request: ClientRequest) {
        self.id = id
        self.request = request
    }
}

public enum ClientRequest: Equatable, Sendable {
    case auth(token: String)
    case refresh(token: String)
    case ping
    case presenceSubscribe(userIDs: [String])
    case presenceUnsubscribe(userIDs: [String])
    case usersQuery(UsersQuery)
    // Chat
    case openDirect(userID: String)
    case createGroup(name: String, members: [String])
    case renameGroup(conversationID: String, name: String)
    case addMembers(conversationID: String, userIDs: [String])
    case removeMember(conversationID: String, userID: String)
    case leave(conversationID: String)
    case listConversations(limit: Int, before: ConversationCursor? = nil)
    case send(conversationID: String, clientID: String, text: String)
    case edit(conversationID: String, messageID: String, text: String)
    case delete(conversationID: String, messageID: String)
    case history(HistoryQuery)
    case sync(positions: [String: Int64], limit: Int)
    case read(conversationID: String, seq: Int64)
    case typing(conversationID: String)
}

/// A page of one conversation's history by sequence number.
public struct HistoryQuery: Equatable, Sendable {
    public var conversationID: String
    /// Messages with seq < before (newest first page when both are nil).
    public var before: Int64?
    /// Messages with seq > after.
    public var after: Int64?
    public var limit: Int

    public init(conversationID: String, before: Int64? = nil, after: Int64? = nil, limit: Int = 50) {
        self.conversationID = conversationID
        self.before = before
        self.after = after
        self.limit = limit
    }
}

public struct UsersQuery: Equatable, Sendable {
    public var search: String?
    public var onlineOnly: Bool
    public var limit: Int
    /// The last `userId` of the previous page.
    public var after: String?

    public init(search: String? = nil, onlineOnly: Bool = false, limit: Int = 50, after: String? = nil) {
        self.search = search
        self.onlineOnly = onlineOnly
        self.limit = limit
        self.after = after
    }
}

/// Why a frame was refused; the connection stays open and gets an `error` frame.
public struct FrameError: Error, Equatable, Sendable {
    public let code: ErrorCode
    public let message: String
    /// The correlation id, when it could be read.
    public let id: String?

    public init(_ code: ErrorCode, _ message: String, id: String? = nil) {
        self.code = code
        self.message = message
        self.id = id
    }
}

extension ClientFrame {
    public static let maxPresenceSubscriptions = 1000
    public static let maxPageSize = 200
    /// A directory search is a few words; the embedded database refuses patterns over 1,000 bytes.
    public static let maxSearchBytes = 200

    /// Frames are UTF-8 JSON, text or binary alike (RFC 6455 8.1: bytes read as UTF-8 that are not
    /// UTF-8 fail the connection, 1007). lws checks text messages; the channel checks binary ones here.
    public static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        String(validating: bytes, as: UTF8.self) != nil
    }

    public static func decode(_ bytes: [UInt8]) throws(FrameError) -> ClientFrame {
        // A raw NUL is never part of UTF-8 JSON; refusing it keeps Foundation from reading the frame
        // as UTF-16 or UTF-32, which it detects by their zero bytes.
        guard !bytes.contains(0) else { throw FrameError(.badJSON, "a frame is one JSON object (UTF-8)") }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            throw FrameError(.badJSON, "a frame is one JSON object")
        }
        let id = object["id"] as? String
        if object["id"] != nil && id == nil { throw FrameError(.badRequest, "id must be a string") }
        if let id, id.utf8.count > 128 { throw FrameError(.badRequest, "id longer than 128 bytes") }
        guard let type = object["type"] as? String else { throw FrameError(.badRequest, "type is required", id: id) }
        let fields = Fields(object: object, id: id)
        switch type {
        case "auth": return ClientFrame(id: id, request: .auth(token: try fields.string("token")))
        case "refresh": return ClientFrame(id: id, request: .refresh(token: try fields.string("token")))
        case "ping": return ClientFrame(id: id, request: .ping)
        case "presence.subscribe":
            return ClientFrame(id: id, request: .presenceSubscribe(userIDs: try fields.userIDs("userIds")))
        case "presence.unsubscribe":
            return ClientFrame(id: id, request: .presenceUnsubscribe(userIDs: try fields.userIDs("userIds")))
        case "users.query":
            let limit = try fields.optionalInt("limit") ?? 50
            guard (1...maxPageSize).contains(limit) else { throw FrameError(.badRequest, "limit must be 1-\(maxPageSize)", id: id) }
            let search = try fields.optionalString("search")
            guard (search?.utf8.count ?? 0) <= maxSearchBytes else {
                throw FrameError(.badRequest, "search longer than \(maxSearchBytes) bytes", id: id)
            }
            return ClientFrame(id: id, request: .usersQuery(UsersQuery(
                search: search, onlineOnly: try fields.optionalBool("online") ?? false,
                limit: limit, after: try fields.optionalString("after"))))
        case "conversation.direct":
            return ClientFrame(id: id, request: .openDirect(userID: try fields.userID("userId")))
        case "conversation.create":
            let name = try fields.string("name")
            do { try ChatRules.validateName(name) } catch { throw FrameError(error.code, error.message, id: id) }
            return ClientFrame(id: id, request: .createGroup(name: name, members: try fields.userIDs("members")))
        case "conversation.rename":
            let name = try fields.string("name")
            do { try ChatRules.validateName(name) } catch { throw FrameError(error.code, error.message, id: id) }
            return ClientFrame(id: id, request: .renameGroup(conversationID: try fields.conversationID(), name: name))
        case "conversation.add":
            return ClientFrame(id: id, request: .addMembers(conversationID: try fields.conversationID(), userIDs: try fields.userIDs("userIds")))
        case "conversation.remove":
            return ClientFrame(id: id, request: .removeMember(conversationID: try fields.conversationID(), userID: try fields.userID("userId")))
        case "conversation.leave":
            return ClientFrame(id: id, request: .leave(conversationID: try fields.conversationID()))
        case "conversations.list":
            var before: ConversationCursor?
            if let text = try fields.optionalString("before") {
                guard let cursor = ConversationCursor(text) else {
                    throw FrameError(.badRequest, "before must be a `next` from an earlier conversations.list", id: id)
                }
                before = cursor
            }
            return ClientFrame(id: id, request: .listConversations(limit: try fields.limit(default: 50), before: before))
        case "message.send":
            let clientID = try fields.string("clientId")
            guard ChatRules.isValidClientID(clientID) else { throw FrameError(.badRequest, "clientId longer than 128 bytes", id: id) }
            return ClientFrame(id: id, request: .send(conversationID: try fields.conversationID(), clientID: clientID,
                                                      text: try fields.text()))
        case "message.edit":
            return ClientFrame(id: id, request: .edit(conversationID: try fields.conversationID(),
                                                      messageID: try fields.string("messageId"), text: try fields.text()))
        case "message.delete":
            return ClientFrame(id: id, request: .delete(conversationID: try fields.conversationID(), messageID: try fields.string("messageId")))
        case "history":
            let before = try fields.optionalInt("before").map(Int64.init)
            let after = try fields.optionalInt("after").map(Int64.init)
            if before != nil && after != nil { throw FrameError(.badRequest, "give before or after, not both", id: id) }
            return ClientFrame(id: id, request: .history(HistoryQuery(conversationID: try fields.conversationID(), before: before,
                                                                      after: after, limit: try fields.limit(default: 50))))
        case "sync":
            let raw = object["positions"].flatMap { $0 is NSNull ? nil : $0 } ?? [String: Any]()
            guard let positions = raw as? [String: Any] else {
                throw FrameError(.badRequest, "positions must be an object of conversationId -> last seq", id: id)
            }
            var parsed: [String: Int64] = [:]
            for (conversation, value) in positions {
                guard ChatRules.isValidConversationID(conversation), let n = value as? NSNumber, !Fields.isBoolean(value),
                      let seq = Int64(exactly: n.doubleValue), seq >= 0 else {
                    throw FrameError(.badRequest, "positions must map conversation ids to sequence numbers", id: id)
                }
                parsed[conversation] = seq
            }
            return ClientFrame(id: id, request: .sync(positions: parsed, limit: try fields.limit(default: 100)))
        case "read":
            let seq = try fields.int("seq")
            guard seq >= 0 else { throw FrameError(.badRequest, "seq must be >= 0", id: id) }
            return ClientFrame(id: id, request: .read(conversationID: try fields.conversationID(), seq: Int64(seq)))
        case "typing":
            return ClientFrame(id: id, request: .typing(conversationID: try fields.conversationID()))
        default:
            throw FrameError(.unknownType, "unknown message type '\(type.prefix(64))'", id: id)
        }
    }
}

/// Typed access to a frame's fields, each failure naming the field.
struct Fields {
    let object: [String: Any]
    let id: String?

    func string(_ name: String) throws(FrameError) -> String {
        guard let value = object[name] as? String, !value.isEmpty else {
            throw FrameError(.badRequest, "\(name) must be a non-empty string", id: id)
        }
        return value
    }

    func optionalString(_ name: String) throws(FrameError) -> String? {
        guard let raw = object[name], !(raw is NSNull) else { return nil }
        guard let value = raw as? String else { throw FrameError(.badRequest, "\(name) must be a string", id: id) }
        return value
    }

    func optionalBool(_ name: String) throws(FrameError) -> Bool? {
        guard let raw = object[name], !(raw is NSNull) else { return nil }
        guard Fields.isBoolean(raw), let value = raw as? Bool else { throw FrameError(.badRequest, "\(name) must be true or false", id: id) }
        return value
    }

    /// JSON true/false, told apart from the numbers 1 and 0 (both bridge to Bool).
    static func isBoolean(_ value: Any) -> Bool {
        String(describing: type(of: value)).contains("Boolean") || type(of: value) == Bool.self
    }

    func optionalInt(_ name: String) throws(FrameError) -> Int? {
        guard let raw = object[name], !(raw is NSNull) else { return nil }
        guard let number = raw as? NSNumber, !Fields.isBoolean(raw), let value = Int(exactly: number.doubleValue) else {
            throw FrameError(.badRequest, "\(name) must be an integer", id: id)
        }
        return value
    }

    func int(_ name: String) throws(FrameError) -> Int {
        guard let value = try optionalInt(name) else { throw FrameError(.badRequest, "\(name) is required", id: id) }
        return value
    }

    func userID(_ name: String) throws(FrameError) -> String {
        let value = try string(name)
        guard UserID.isValid(value) else { throw FrameError(.badRequest, "\(name) is not a user id", id: id) }
        return value
    }

    func conversationID() throws(FrameError) -> String {
        let value = try string("conversationId")
        guard ChatRules.isValidConversationID(value) else { throw FrameError(.badRequest, "conversationId is malformed", id: id) }
        return value
    }

    func text() throws(FrameError) -> String {
        guard let value = object["text"] as? String else { throw FrameError(.badRequest, "text must be a string", id: id) }
        return value
    }

    func limit(default value: Int) throws(FrameError) -> Int {
        let limit = try optionalInt("limit") ?? value
        guard (1...ClientFrame.maxPageSize).contains(limit) else {
            throw FrameError(.badRequest, "limit must be 1-\(ClientFrame.maxPageSize)", id: id)
        }
        return limit
    }

    func userIDs(_ name: String) throws(FrameError) -> [String] {
        guard let list = object[name] as? [Any], let ids = list as? [String], ids.allSatisfy({ UserID.isValid($0) }) else {
            throw FrameError(.badRequest, "\(name) must be a list of user ids", id: id)
        }
        guard ids.count <= ClientFrame.maxPresenceSubscriptions else {
            throw FrameError(.badRequest, "at most \(ClientFrame.maxPresenceSubscriptions) user ids", id: id)
        }
        return ids
    }
}

/// Clerk user ids: `user_` and base62, but any short printable id is accepted (tests, other issuers).
public enum UserID {
    public static func isValid(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128 && id.unicodeScalars.allSatisfy { $0.value > 32 && $0.value < 127 }
    }
}
