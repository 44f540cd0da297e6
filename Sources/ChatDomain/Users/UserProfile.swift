/// The profile fields the backend keeps from Clerk. Every field but the id may be absent.
public struct UserProfile: Equatable, Sendable {
    public var clerkID: String
    public var username: String?
    public var email: String?
    public var firstName: String?
    public var lastName: String?
    public var imageURL: String?

    public init(clerkID: String, username: String? = nil, email: String? = nil, firstName: String? = nil,
                lastName: String? = nil, imageURL: String? = nil) {
        self.clerkID = clerkID
        self.username = username
        self.email = email
        self.firstName = firstName
        self.lastName = lastName
        self.imageURL = imageURL
    }
}
