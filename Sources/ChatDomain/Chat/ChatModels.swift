import Foundation

/// A direct (two people) or group conversation.
public struct Conversation: Equatable, Sendable {
    public enum Kind: String, Sendable { case direct, group }
    public var id: String
    public var kind: Kind
    public var name: String?
    public var members: [String]
    public var lastSeq: Int64
    public var updatedAt: Date

    public init(id: String, kind: Kind, name: String?, members: [String], lastSeq: Int64, updatedAt: Date) {
        self.id = id
        self.kind = kind
        self.name = name
        self.members = members
        self.lastSeq = lastSeq
        self.updatedAt = updatedAt
    }

    public var json: [String: JSONValue] {
        ["conversationId": .string(id), "kind": .string(kind.rawValue), "name": name.map(JSONValue.string) ?? .null,
         "members": .array(members.map(JSONValue.string)), "lastSeq": .int(lastSeq), "updatedAt": .string(JSONValue.iso8601(updatedAt))]
    }
}

/// A stored message in its latest state.
public struct ChatMessage: Equatable, Sendable {
    public var id: String
    public var conversationID: String
    public var seq: Int64
    public var senderID: String
    public var clientID: String
    public var text: String?
    public var createdAt: Date
    public var editedAt: Date?
    public var deleted: Bool
    /// The sender's user record is a tombstone: clients show "deleted user".
    public var senderDeleted: Bool

    public init(id: String, conversationID: String, seq: Int64, senderID: String, clientID: String, text: String?,
                createdAt: Date, editedAt: Date? = nil, deleted: Bool = false, senderDeleted: Bool = false) {
        self.id = id
        self.conversationID = conversationID
        self.seq = seq
        self.senderID = senderID
        self.clientID = clientID
        self.text = text
        self.createdAt = createdAt
        self.editedAt = editedAt
        self.deleted = deleted
        self.senderDeleted = senderDeleted
    }

    public var json: [String: JSONValue] {
        var o: [String: JSONValue] = [
            "messageId": .string(id), "conversationId": .string(conversationID), "seq": .int(seq),
            "senderId": .string(senderID), "clientId": .string(clientID),
            "text": deleted ? .null : (text.map(JSONValue.string) ?? .null),
            "createdAt": .string(JSONValue.iso8601(createdAt)),
            "editedAt": editedAt.map { .string(JSONValue.iso8601($0)) } ?? .null,
            "deleted": .bool(deleted),
        ]
        if senderDeleted { o["senderDeleted"] = .bool(true) }
        return o
    }
}

/// Rules on conversations and message text, testable without a database.
public enum ChatRules {
    public static let maxGroupMembers = 1000
    public static let maxNameBytes = 200

    /// The same id for the same two people, whoever opens it: opening twice returns one conversation.
    public static func directConversationID(_ a: String, _ b: String) -> String {
        let (x, y) = a < b ? (a, b) : (b, a)
        return "dm:\(x):\(y)"
    }

    public static func validateText(_ text: String, maxBytes: Int) throws(FrameError) {
        if text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw FrameError(.invalidMessage, "text is empty")
        }
        if text.utf8.count > maxBytes { throw FrameError(.invalidMessage, "text longer than \(maxBytes) bytes") }
    }

    public static func validateName(_ name: String) throws(FrameError) {
        if name.trimmingCharacters(in: .whitespaces).isEmpty { throw FrameError(.badRequest, "name is empty") }
        if name.utf8.count > maxNameBytes { throw FrameError(.badRequest, "name longer than \(maxNameBytes) bytes") }
    }

    public static func isValidConversationID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 300 && id.unicodeScalars.allSatisfy { $0.value > 32 && $0.value < 127 }
    }

    public static func isValidClientID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= 128
    }
}

/// Delivers one conversation's messages in sequence order when they can arrive out of order (this
/// instance's commits and other instances' change-stream events race): holds a message whose
/// predecessor has not been seen yet, for a short while.
public struct SequenceGate<Item: Sendable>: Sendable {
    private var delivered: [String: Int64] = [:]
    private var held: [String: [Int64: (Date, Item)]] = [:]
    public let maxHold: TimeInterval

    public init(maxHold: TimeInterval = 0.5) { self.maxHold = maxHold }

    /// Returns the items now deliverable, in order.
    public mutating func accept(conversation: String, seq: Int64, item frame: Item, now: Date) -> [Item] {
        guard let last = delivered[conversation] else {
            delivered[conversation] = seq
            return [frame] + drain(conversation)
        }
        if seq <= last { return [] }                       // already delivered (the other path's copy)
        if seq == last + 1 {
            delivered[conversation] = seq
            return [frame] + drain(conversation)
        }
        held[conversation, default: [:]][seq] = (now, frame)
        return []
    }

    /// Releases frames held past `maxHold` (their predecessors were lost to this instance: the
    /// clients' sequence numbers show the gap and they page history).
    public mutating func expire(now: Date) -> [Item] {
        var out: [Item] = []
        for (conversation, frames) in held {
            guard let oldest = frames.values.map(\.0).min(), now.timeIntervalSince(oldest) > maxHold,
                  let first = frames.keys.min() else { continue }
            delivered[conversation] = first - 1
            let ready = drain(conversation)
            out += ready
        }
        return out
    }

    private mutating func drain(_ conversation: String) -> [Item] {
        var out: [Item] = []
        while let next = delivered[conversation].map({ $0 + 1 }), let item = held[conversation]?.removeValue(forKey: next) {
            out.append(item.1)
            delivered[conversation] = next
        }
        if held[conversation]?.isEmpty == true { held[conversation] = nil }
        return out
    }
}

/// A conversation's last message as `conversations.list` shows it (text cut to 200 characters, null once deleted).
public struct MessagePreview: Equatable, Sendable {
    public var messageID: String
    public var seq: Int64
    public var senderID: String
    public var text: String?
    public var deleted: Bool
    public var createdAt: Date?

    public init(messageID: String, seq: Int64, senderID: String, text: String?, deleted: Bool, createdAt: Date?) {
        self.messageID = messageID
        self.seq = seq
        self.senderID = senderID
        self.text = text
        self.deleted = deleted
        self.createdAt = createdAt
    }

    public var json: [String: JSONValue] {
        ["messageId": .string(messageID), "seq": .int(seq), "senderId": .string(senderID),
         "text": deleted ? .null : (text.map(JSONValue.string) ?? .null), "deleted": .bool(deleted),
         "createdAt": createdAt.map { .string(JSONValue.iso8601($0)) } ?? .null]
    }
}
