import ChatDomain
import Foundation

/// Domain values to and from their stored documents.
extension ChatStore {
    static func decode(_ doc: BSONDocument) -> Conversation? {
        guard let id = doc["_id"]?.stringValue, let kind = doc["kind"]?.stringValue.flatMap(Conversation.Kind.init) else { return nil }
        return Conversation(id: id, kind: kind, name: doc["name"]?.stringValue,
                            members: doc["members"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                            lastSeq: doc["lastSeq"]?.int64Value ?? 0, updatedAt: doc["updatedAt"]?.dateValue ?? Date(timeIntervalSince1970: 0))
    }

    static func preview(_ doc: BSONDocument) -> MessagePreview? {
        guard let id = doc["messageId"]?.stringValue, let seq = doc["seq"]?.int64Value, let sender = doc["senderId"]?.stringValue else { return nil }
        return MessagePreview(messageID: id, seq: seq, senderID: sender, text: doc["text"]?.stringValue,
                              deleted: doc["deleted"]?.boolValue ?? false, createdAt: doc["createdAt"]?.dateValue)
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
}
