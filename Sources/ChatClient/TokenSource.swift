import ClerkAuth
import Foundation

/// Where session tokens come from: a fixed token (it cannot be renewed), or the local development
/// key, which mints a fresh one for every connection attempt as `chat-server mint-token` does.
public enum TokenSource: Sendable {
    case fixed(String)
    case development(privateKeyPEM: String, userID: String, lifetime: TimeInterval)

    public var canRenew: Bool { if case .development = self { return true } else { return false } }

    public func token() throws -> String {
        switch self {
        case .fixed(let token): return token
        case .development(let pem, let user, let lifetime):
            // The same default session id as `chat-server mint-token`.
            return try DevelopmentKeys.mint(privateKeyPEM: pem, userID: user, sessionID: "sess_dev_\(user)", lifetime: lifetime,
                                            azp: nil, issuer: nil, kid: nil, now: Date())
        }
    }

    /// Loads (or creates on first use, like `chat-server dev-keys`) the key pair in `directory`.
    public static func development(userID: String, keysDirectory: URL, lifetime: TimeInterval = 3600) throws -> TokenSource {
        let keys = try DevelopmentKeys.loadOrCreate(in: keysDirectory)
        return .development(privateKeyPEM: keys.privateKeyPEM, userID: userID, lifetime: lifetime)
    }
}
