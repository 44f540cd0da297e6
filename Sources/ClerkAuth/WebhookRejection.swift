/// Why a delivery failed verification. Answer one generic 4xx for all; log `reason`.
public enum WebhookRejection: Error, Equatable, Sendable {
    /// "id", "timestamp" or "signature".
    case missingHeader(String)
    case invalidTimestamp
    case timestampTooOld
    case timestampTooNew
    /// The signature header held no well-formed `v1` entry.
    case malformedSignature
    case noMatchingSignature

    /// Short snake_case label for logs and metrics; never carries header values.
    public var reason: String {
        switch self {
        case .missingHeader(let name): return "missing_\(name)"
        case .invalidTimestamp: return "invalid_timestamp"
        case .timestampTooOld: return "stale_timestamp"
        case .timestampTooNew: return "future_timestamp"
        case .malformedSignature: return "malformed_signature"
        case .noMatchingSignature: return "bad_signature"
        }
    }
}
