import ChatDomain
import Foundation

// The domain types read back from the JSON the server writes with their `json` properties.

extension ChatMessage {
    public init?(json: JSONValue?) {
        guard let json, let id = json["messageId"]?.stringValue, let conversation = json["conversationId"]?.stringValue,
              let seq = json["seq"]?.intValue, let sender = json["senderId"]?.stringValue else { return nil }
        self.init(id: id, conversationID: conversation, seq: seq, senderID: sender,
                  clientID: json["clientId"]?.stringValue ?? "", text: json["text"]?.stringValue,
                  createdAt: json["createdAt"]?.dateValue ?? Date(), editedAt: json["editedAt"]?.dateValue,
                  deleted: json["deleted"]?.boolValue ?? false, senderDeleted: json["senderDeleted"]?.boolValue ?? false)
    }
}

extension Conversation {
    public init?(json: JSONValue?) {
        guard let json, let id = json["conversationId"]?.stringValue else { return nil }
        self.init(id: id, kind: Kind(rawValue: json["kind"]?.stringValue ?? "") ?? .group, name: json["name"]?.stringValue,
                  members: json["members"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                  lastSeq: json["lastSeq"]?.intValue ?? 0, updatedAt: json["updatedAt"]?.dateValue ?? Date())
    }
}

extension PresenceSnapshot {
    public init?(json: JSONValue?) {
        guard let json, let user = json["userId"]?.stringValue else { return nil }
        self.init(userID: user, isOnline: json["isOnline"]?.boolValue ?? false, lastSeen: json["lastSeen"]?.dateValue)
    }
}
