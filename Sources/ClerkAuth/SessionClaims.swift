import Foundation

/// The claims of a verified Clerk session token that the server uses.
public struct SessionClaims: Sendable, Equatable {
    /// `sub`: the Clerk user id.
    public let userID: String
    /// `sid`: the Clerk session id, matched against session.ended/removed/revoked webhooks.
    public let sessionID: String?
    public let expiresAt: Date
    public let issuedAt: Date?
    /// `azp`: the origin of the page that asked for the token.
    public let authorizedParty: String?

    public init(userID: String, sessionID: String?, expiresAt: Date, issuedAt: Date?, authorizedParty: String?) {
        self.userID = userID
        self.sessionID = sessionID
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.authorizedParty = authorizedParty
    }
}
