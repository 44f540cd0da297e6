import ChatDomain
import Foundation

/// What a `ChatConnection` reports besides replies: connection changes and pushed events, messages
/// already de-duplicated and in order per conversation.
public enum ChatEvent: Sendable {
    /// `welcome` received; `resumed` is true after a reconnect.
    case connected(userID: String, connectionID: String, resumed: Bool)
    /// The connection dropped; the next attempt starts in `retryIn` seconds.
    case disconnected(code: UInt16?, reason: String, retryIn: TimeInterval)
    /// Given up for good (refused token, session ended, unreachable at start...).
    case failed(ChatClientError)
    case message(ChatMessage)
    case messageUpdated(ChatMessage)
    case messageDeleted(ChatMessage)
    case read(conversationID: String, userID: String, seq: Int64)
    case typing(conversationID: String, userID: String, expiresIn: TimeInterval)
    case conversation(Conversation)
    case presence(PresenceSnapshot)
    /// An event type this client does not know (a newer server).
    case other(JSONValue)

    /// The event as one JSON object, in the server's own shapes (scriptable mode prints it).
    public var json: JSONValue {
        switch self {
        case .connected(let user, let connection, let resumed):
            return ["type": "welcome", "userId": .string(user), "connectionId": .string(connection), "resumed": .bool(resumed)]
        case .disconnected(let code, let reason, let retryIn):
            return ["type": "disconnected", "code": code.map { .int(Int64($0)) } ?? .null, "reason": .string(reason),
                    "retryInSeconds": .double((retryIn * 1000).rounded() / 1000)]
        case .failed(let error):
            return ["type": "failed", "message": .string(error.description)]
        case .message(let m): return ["type": "message", "message": .object(m.json)]
        case .messageUpdated(let m): return ["type": "message.updated", "message": .object(m.json)]
        case .messageDeleted(let m): return ["type": "message.deleted", "message": .object(m.json)]
        case .read(let c, let u, let seq):
            return ["type": "read", "conversationId": .string(c), "userId": .string(u), "seq": .int(seq)]
        case .typing(let c, let u, let expires):
            return ["type": "typing", "conversationId": .string(c), "userId": .string(u), "expiresInMs": .int(Int64(expires * 1000))]
        case .conversation(let c): return ["type": "conversation", "conversation": .object(c.json)]
        case .presence(let p):
            var o = p.json
            o["type"] = "presence"
            return .object(o)
        case .other(let json): return json
        }
    }
}
