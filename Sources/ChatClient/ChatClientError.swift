import ChatDomain

/// Why a request or the connection failed, worded for the person at the terminal.
public enum ChatClientError: Error, Equatable, CustomStringConvertible, Sendable {
    /// An `error` frame answering a request.
    case server(code: String, message: String)
    /// The token was refused at `auth` (close 4003), or no token could be made.
    case tokenRefused(code: String, reason: String)
    case tokenExpired(reason: String)
    case sessionEnded
    case userDeleted
    case unreachable(url: String, reason: String)
    /// Closed with a code that says "do not reconnect" (e.g. 4010).
    case closed(code: UInt16?, reason: String)
    case noToken(String)
    case timeout(String)
    /// The connection was closed by this client before the reply came.
    case cancelled

    public var description: String {
        switch self {
        case .server(let code, let message): return "the server refused the request (\(code): \(message))"
        case .tokenRefused(let code, let reason): return "the server refused the token (\(code): \(reason))"
        case .tokenExpired(let reason):
            return "the token has expired (token_expired: \(reason)); get a fresh one, or use --user with the development key"
        case .sessionEnded: return "the session has ended (close 4005): sign in again"
        case .userDeleted: return "this user was deleted (close 4006)"
        case .unreachable(let url, let reason): return "cannot reach the server at \(url) (\(reason))"
        case .closed(let code, let reason):
            return "the server closed the connection (\(code.map(String.init) ?? "no code")\(reason.isEmpty ? "" : ": \(reason)"))"
        case .noToken(let why): return why
        case .timeout(let what): return what
        case .cancelled: return "the connection was closed"
        }
    }

    /// The `error` frame's code, for request errors.
    public var code: String? {
        if case .server(let code, _) = self { return code }
        return nil
    }
}
