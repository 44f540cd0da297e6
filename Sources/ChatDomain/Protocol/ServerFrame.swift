import Foundation

/// Frames the server sends. Each is encoded once (`encoded()`) and the same bytes go to every recipient.
public enum ServerFrame: Sendable {
    case welcome(id: String?, userID: String, sessionID: String?, connectionID: String, protocolVersion: String)
    case ok(id: String?, data: [String: JSONValue])
    case error(id: String?, code: ErrorCode, message: String)
    case presence(PresenceSnapshot)
    /// A chat event pushed to members: `message`, `message.updated`, `message.deleted`, `read`,
    /// `typing`, `conversation`.
    case event(type: String, fields: [String: JSONValue])

    public func encoded() -> [UInt8] {
        var object: [String: JSONValue]
        switch self {
        case .welcome(let id, let user, let session, let connection, let version):
            object = ["type": "welcome", "userId": .string(user), "sessionId": session.map(JSONValue.string) ?? .null,
                      "connectionId": .string(connection), "protocol": .string(version)]
            if let id { object["id"] = .string(id) }
        case .ok(let id, let data):
            object = ["type": "ok", "data": .object(data)]
            if let id { object["id"] = .string(id) }
        case .error(let id, let code, let message):
            object = ["type": "error", "code": .string(code.rawValue), "message": .string(message)]
            if let id { object["id"] = .string(id) }
        case .presence(let p):
            object = p.json
            object["type"] = "presence"
        case .event(let type, let fields):
            object = fields
            object["type"] = .string(type)
        }
        return JSONValue.object(object).encoded()
    }
}

/// A user's presence as clients see it.
public struct PresenceSnapshot: Equatable, Sendable {
    public var userID: String
    public var isOnline: Bool
    public var lastSeen: Date?
    /// The user document's `presenceVersion` when read: it orders reads of one user, so that a
    /// change-stream event overtaken by a newer local read is not replayed. Not sent to clients.
    public var version: Int64?

    public init(userID: String, isOnline: Bool, lastSeen: Date?, version: Int64? = nil) {
        self.userID = userID
        self.isOnline = isOnline
        self.lastSeen = lastSeen
        self.version = version
    }

    public var json: [String: JSONValue] {
        ["userId": .string(userID), "isOnline": .bool(isOnline), "lastSeen": lastSeen.map { .string(JSONValue.iso8601($0)) } ?? .null]
    }
}
