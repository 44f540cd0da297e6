import ChatDomain
import Logging
import MongoStore

/// What a failed request is answered with: the one mapping from errors to the protocol's codes.
struct RequestFailure: Equatable {
    let code: ErrorCode
    let message: String

    init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The answer for `error`; unexpected errors are logged (with `operation`) and answered `internal`.
    init(_ error: any Error, operation: String, logger: Logger) {
        switch error {
        case ChatStore.ChatError.notFound(let m): self.init(.notFound, m)
        case ChatStore.ChatError.forbidden(let m): self.init(.forbidden, m)
        case ChatStore.ChatError.invalid(let m): self.init(.badRequest, m)
        case let e as DatabaseError where e.isUnavailable: self.init(.unavailable, "database unavailable, retry")
        default:
            logger.error("\(operation) failed", metadata: ["error": "\(error)"])
            self.init(.internalError, "internal error")
        }
    }
}
