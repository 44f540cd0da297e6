import ChatDomain
import Foundation

/// A `conversations.list` entry: the conversation, its unread count and last message preview.
public struct ConversationSummary: Sendable {
    public var conversation: Conversation
    public var unread: Int64
    public var lastMessageText: String?
    public var lastMessageSender: String?
    public var json: JSONValue

    public init?(json: JSONValue) {
        guard let c = Conversation(json: json) else { return nil }
        conversation = c
        unread = json["unread"]?.intValue ?? 0
        lastMessageText = json["lastMessage"]?["text"]?.stringValue
        lastMessageSender = json["lastMessage"]?["senderId"]?.stringValue
        self.json = json
    }
}

/// A `users.query` entry: presence plus the profile Clerk's webhook synced (nil until then).
public struct DirectoryUser: Sendable {
    public var userID: String
    public var username: String?
    public var firstName: String?
    public var lastName: String?
    public var isOnline: Bool
    public var lastSeen: Date?
    public var json: JSONValue

    public init?(json: JSONValue) {
        guard let id = json["userId"]?.stringValue else { return nil }
        userID = id
        username = json["username"]?.stringValue
        firstName = json["firstName"]?.stringValue
        lastName = json["lastName"]?.stringValue
        isOnline = json["isOnline"]?.boolValue ?? false
        lastSeen = json["lastSeen"]?.dateValue
        self.json = json
    }

    /// What a person would call them: username, else the full name, else the id.
    public var displayName: String {
        if let username, !username.isEmpty { return username }
        let full = [firstName, lastName].compactMap { $0 }.joined(separator: " ")
        return full.isEmpty ? userID : full
    }
}

/// The `ok` to `message.send`: the stored message's id and sequence number.
public struct MessageAck: Sendable {
    public var conversationID: String
    public var clientID: String
    public var messageID: String
    public var seq: Int64
    public var json: JSONValue

    public init?(json: JSONValue) {
        guard let c = json["conversationId"]?.stringValue, let m = json["messageId"]?.stringValue,
              let seq = json["seq"]?.intValue else { return nil }
        conversationID = c
        clientID = json["clientId"]?.stringValue ?? ""
        messageID = m
        self.seq = seq
        self.json = json
    }
}

/// A `history` page, ascending by seq.
public struct HistoryPage: Sendable {
    public var conversationID: String
    public var messages: [ChatMessage]
    public var hasMore: Bool
}
