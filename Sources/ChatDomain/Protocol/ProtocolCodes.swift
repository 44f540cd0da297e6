/// Error codes carried by `error` frames. Documented in protocol/README.md.
public enum ErrorCode: String, Sendable, CaseIterable {
    case badJSON = "bad_json"                 // the frame is not a JSON object
    case badRequest = "bad_request"           // a field is missing or has the wrong type
    case unknownType = "unknown_type"         // no such message type
    case unauthenticated                      // authenticate first
    case alreadyAuthenticated = "already_authenticated"
    case tokenInvalid = "token_invalid"       // refused token (signature, algorithm, audience...)
    case tokenExpired = "token_expired"       // expired: get a fresh one and refresh
    case wrongUser = "wrong_user"             // a refresh token for another user
    case rateLimited = "rate_limited"
    case notFound = "not_found"
    case forbidden                            // not a member of that conversation
    case invalidMessage = "invalid_message"   // empty or too long text
    case userDeleted = "user_deleted"
    case unavailable                          // the database is unavailable: retry
    case internalError = "internal"
}

/// Close codes the server uses. Documented in protocol/README.md.
public enum ChannelCloseCode: UInt16, Sendable, CaseIterable {
    case normal = 1000
    case invalidPayload = 1007                // a message (text or binary) that is not valid UTF-8
    case messageTooBig = 1009                 // inbound message over the size limit
    case internalError = 1011
    case serviceRestart = 1012                // server shutting down: reconnect (to another instance)
    case tryAgainLater = 1013                 // the database is unavailable: reconnect after a backoff
    case authenticationTimeout = 4001         // no valid auth message in time
    case tokenInvalid = 4003                  // the token was refused: do not retry with it
    case tokenExpired = 4004                  // the token expired: get a new one and reconnect
    case sessionEnded = 4005                  // the Clerk session ended, was removed or revoked
    case userDeleted = 4006                   // the Clerk user was deleted
    case rateLimited = 4008                   // persistently over the rate limit
    case slowConsumer = 4009                  // outbound queue over its cap: the client reads too slowly
    case originNotAllowed = 4010              // a browser page from an origin not allowed
}
