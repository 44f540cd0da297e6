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

    public static func decode(_ bytes: [UInt8]) throws(FrameError) -> ClientFrame {
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
            return ClientFrame(id: id, request: .usersQuery(UsersQuery(
                search: try fields.optionalString("search"), onlineOnly: try fields.optionalBool("online") ?? false,
                limit: limit, after: try fields.optionalString("after"))))
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
        guard let value = raw as? Bool else { throw FrameError(.badRequest, "\(name) must be true or false", id: id) }
        return value
    }

    func optionalInt(_ name: String) throws(FrameError) -> Int? {
        guard let raw = object[name], !(raw is NSNull) else { return nil }
        guard let number = raw as? NSNumber, !(raw is Bool), let value = Int(exactly: number.doubleValue) else {
            throw FrameError(.badRequest, "\(name) must be an integer", id: id)
        }
        return value
    }

    func int(_ name: String) throws(FrameError) -> Int {
        guard let value = try optionalInt(name) else { throw FrameError(.badRequest, "\(name) is required", id: id) }
        return value
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
