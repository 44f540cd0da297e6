/// Why a session token was refused. Answer one generic 401 for all; log `reason`.
public enum TokenRejection: Error, Equatable, Sendable {
    case malformed
    /// The header's `alg`, truncated; only RS256 is accepted.
    case unsupportedAlgorithm(String)
    case unknownKey
    case badSignature
    case expired
    case notYetValid
    case issuedInFuture
    case missingSubject
    /// The token's `azp`, which is not one of the authorized parties.
    case unauthorizedParty(String)
    case wrongIssuer

    /// Short snake_case label for logs and metrics.
    public var reason: String {
        switch self {
        case .malformed: return "malformed_token"
        case .unsupportedAlgorithm: return "unsupported_algorithm"
        case .unknownKey: return "unknown_key"
        case .badSignature: return "bad_signature"
        case .expired: return "expired"
        case .notYetValid: return "not_yet_valid"
        case .issuedInFuture: return "issued_in_future"
        case .missingSubject: return "missing_subject"
        case .unauthorizedParty: return "unauthorized_party"
        case .wrongIssuer: return "wrong_issuer"
        }
    }
}
