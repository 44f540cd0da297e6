/// A Svix signing secret: the decoded HMAC key. Its description is redacted so it never reaches a log.
public struct WebhookSecret: Sendable, CustomStringConvertible, CustomReflectable {
    /// Shorter keys would weaken the HMAC; 16 keeps every official vector (one uses 18 bytes).
    public static let minimumKeyBytes = 16

    let key: [UInt8]

    /// Accepts `whsec_` + base64 or bare base64 (standard alphabet, correct padding).
    public init(parsing text: String) throws(WebhookSecretError) {
        var body = Substring(text).trimmingWhitespace()
        if body.hasPrefix("whsec_") { body = body.dropFirst("whsec_".count) }
        guard !body.isEmpty else { throw .empty }
        guard let key = Base64.decode(body, alphabet: .standard, padding: .required) else { throw .notBase64 }
        guard key.count >= Self.minimumKeyBytes else { throw .tooShort(byteCount: key.count) }
        self.key = key
    }

    public var description: String { "WebhookSecret(redacted)" }
    public var customMirror: Mirror { Mirror(self, children: []) }
}

/// Why a secret was refused. Descriptions name the problem only, never the secret text.
public enum WebhookSecretError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case notBase64
    case tooShort(byteCount: Int)

    public var description: String {
        switch self {
        case .empty:
            return "the webhook secret is empty"
        case .notBase64:
            return "the webhook secret is not 'whsec_' followed by valid standard base64"
        case .tooShort(let count):
            return "the webhook secret decodes to \(count) bytes; at least \(WebhookSecret.minimumKeyBytes) are required"
        }
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var result = self
        while let first = result.first, first.isWhitespace { result = result.dropFirst() }
        while let last = result.last, last.isWhitespace { result = result.dropLast() }
        return result
    }
}
