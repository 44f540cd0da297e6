import Foundation

/// What members of a conversation must hear about, as the stores record it. Its frame is encoded
/// here, in one place.
public enum ConversationEvent: Equatable, Sendable {
    case message(ChatMessage)
    case messageUpdated(ChatMessage)
    case messageDeleted(ChatMessage)
    /// Created or changed (members, name).
    case conversation(Conversation)
    case read(conversationID: String, userID: String, seq: Int64)
    case typing(conversationID: String, userID: String, expiresInMs: Int)

    public var conversationID: String {
        switch self {
        case .message(let m), .messageUpdated(let m), .messageDeleted(let m): return m.conversationID
        case .conversation(let c): return c.id
        case .read(let id, _, _), .typing(let id, _, _): return id
        }
    }

    /// New messages carry their sequence number: they are delivered in its order.
    public var seq: Int64? {
        if case .message(let m) = self { return m.seq }
        return nil
    }

    public var frame: ServerFrame {
        switch self {
        case .message(let m): return .event(type: "message", fields: ["message": .object(m.json)])
        case .messageUpdated(let m): return .event(type: "message.updated", fields: ["message": .object(m.json)])
        case .messageDeleted(let m): return .event(type: "message.deleted", fields: ["message": .object(m.json)])
        case .conversation(let c): return .event(type: "conversation", fields: ["conversation": .object(c.json)])
        case .read(let id, let user, let seq):
            return .event(type: "read", fields: ["conversationId": .string(id), "userId": .string(user), "seq": .int(seq)])
        case .typing(let id, let user, let expiresInMs):
            return .event(type: "typing", fields: ["conversationId": .string(id), "userId": .string(user),
                                                   "expiresInMs": .int(Int64(expiresInMs))])
        }
    }
}

/// An event on its way to members' connections: its frame encoded once (every connection, on every
/// instance, queues these bytes), who gets it (minus `exclude`), and the sequence number of a new message.
public struct Fanout: Sendable {
    public let conversationID: String
    public let recipients: [String]
    public let exclude: String?
    public let seq: Int64?
    public let frame: [UInt8]

    public init(_ event: ConversationEvent, recipients: [String], exclude: String? = nil) {
        self.init(conversationID: event.conversationID, recipients: recipients, exclude: exclude, seq: event.seq,
                  frame: event.frame.encoded())
    }

    /// As another instance recorded it (the outbox).
    public init(conversationID: String, recipients: [String], exclude: String?, seq: Int64?, frame: [UInt8]) {
        self.conversationID = conversationID
        self.recipients = recipients
        self.exclude = exclude
        self.seq = seq
        self.frame = frame
    }
}
