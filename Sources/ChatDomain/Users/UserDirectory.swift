import Foundation

/// Rules of the user directory (`users.query`).
public enum UserDirectory {
    /// Whether a search can be a whole email address, the only way an email is matched (a substring
    /// would let anyone probe addresses a few characters at a time): it has an `@` and no whitespace
    /// or control characters.
    public static func couldBeEmail(_ search: String) -> Bool {
        search.contains("@") && !search.unicodeScalars.contains {
            $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F
        }
    }
}

/// One user as `users.query` lists them.
public struct DirectoryEntry: Equatable, Sendable {
    public var userID: String
    public var username: String?
    public var firstName: String?
    public var lastName: String?
    public var imageURL: String?
    public var isOnline: Bool
    public var lastSeen: Date?

    public init(userID: String, username: String?, firstName: String?, lastName: String?, imageURL: String?,
                isOnline: Bool, lastSeen: Date?) {
        self.userID = userID
        self.username = username
        self.firstName = firstName
        self.lastName = lastName
        self.imageURL = imageURL
        self.isOnline = isOnline
        self.lastSeen = lastSeen
    }

    public var json: [String: JSONValue] {
        ["userId": .string(userID), "username": username.map(JSONValue.string) ?? .null,
         "firstName": firstName.map(JSONValue.string) ?? .null, "lastName": lastName.map(JSONValue.string) ?? .null,
         "imageUrl": imageURL.map(JSONValue.string) ?? .null, "isOnline": .bool(isOnline),
         "lastSeen": lastSeen.map { .string(JSONValue.iso8601($0)) } ?? .null]
    }
}
