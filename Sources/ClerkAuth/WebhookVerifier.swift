import COpenSSL
import Foundation

/// Verifies Svix (Standard Webhooks) signatures: HMAC-SHA256 over `id.timestamp.body`.
public struct WebhookVerifier: Sendable {
    /// Bounds the work an attacker can cause with a long signature header.
    static let maxSignatureEntries = 16
    private static let digestLength = 32

    private let secrets: [WebhookSecret]
    public let tolerance: TimeInterval

    public init(secrets: [WebhookSecret], tolerance: TimeInterval = 300) {
        self.secrets = secrets
        self.tolerance = tolerance
    }

    /// CLERK_WEBHOOK_SECRET may hold several secrets separated by spaces or commas (rotation).
    public init(secretList: String, tolerance: TimeInterval = 300) throws(WebhookSecretError) {
        let parts = secretList.split(whereSeparator: { $0 == "," || $0.isWhitespace })
        guard !parts.isEmpty else { throw .empty }
        var secrets: [WebhookSecret] = []
        for part in parts { secrets.append(try WebhookSecret(parsing: String(part))) }
        self.init(secrets: secrets, tolerance: tolerance)
    }

    /// Returns the message id (the idempotency key) when some `v1` entry matches some secret.
    public func verify(headers: WebhookHeaders, body: [UInt8], now: Date = Date()) throws(WebhookRejection) -> String {
        try checkHeaders(headers, now: now)
        guard let id = headers.id, let timestamp = headers.timestamp, let signature = headers.signature else {
            throw .missingHeader("id")
        }
        let candidates = Self.v1Signatures(in: signature)
        guard !candidates.isEmpty else { throw .malformedSignature }
        let content = Self.signedContent(id: id, timestamp: timestamp, body: body)
        for secret in secrets {
            let expected = Self.hmac(key: secret.key, content)
            for candidate in candidates where Self.constantTimeEqual(candidate, expected) { return id }
        }
        throw .noMatchingSignature
    }

    /// What can be refused from the headers alone, before a body is read: a missing header, a
    /// malformed timestamp or one outside the tolerance, a signature header without any `v1` entry.
    public func checkHeaders(_ headers: WebhookHeaders, now: Date = Date()) throws(WebhookRejection) {
        guard let id = headers.id, !id.isEmpty else { throw .missingHeader("id") }
        guard let timestamp = headers.timestamp, !timestamp.isEmpty else { throw .missingHeader("timestamp") }
        guard let signature = headers.signature, !signature.isEmpty else { throw .missingHeader("signature") }

        // Digits only (no sign, no spaces); the length cap keeps Int parsing from overflowing.
        guard timestamp.utf8.count <= 15, timestamp.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let sent = Int(timestamp) else { throw .invalidTimestamp }
        // The window is checked before the HMAC so replays of old deliveries cost nothing.
        let current = Int(now.timeIntervalSince1970.rounded(.down))
        if Double(current - sent) > tolerance { throw .timestampTooOld }
        if Double(sent - current) > tolerance { throw .timestampTooNew }
        guard !Self.v1Signatures(in: signature).isEmpty else { throw .malformedSignature }
    }

    /// `v1,<base64>` for tests, the dev "send webhook" command and the load generator.
    public static func sign(secret: WebhookSecret, id: String, timestamp: Int, body: [UInt8]) -> String {
        let mac = hmac(key: secret.key, signedContent(id: id, timestamp: String(timestamp), body: body))
        return "v1," + Base64.encode(mac)
    }

    /// Decoded `v1` entries of the right length; other versions and malformed entries are skipped.
    static func v1Signatures(in header: String) -> [[UInt8]] {
        var result: [[UInt8]] = []
        for entry in header.split(separator: " ").prefix(maxSignatureEntries) {
            guard let comma = entry.firstIndex(of: ","), entry[..<comma] == "v1" else { continue }
            let encoded = entry[entry.index(after: comma)...]
            // Length is checked before comparing: a bare "v1," must never match.
            guard let bytes = Base64.decode(encoded, alphabet: .standard, padding: .required),
                  bytes.count == digestLength else { continue }
            result.append(bytes)
        }
        return result
    }

    private static func signedContent(id: String, timestamp: String, body: [UInt8]) -> [UInt8] {
        var content: [UInt8] = []
        content.reserveCapacity(id.utf8.count + timestamp.utf8.count + 2 + body.count)
        content += id.utf8
        content.append(UInt8(ascii: "."))
        content += timestamp.utf8
        content.append(UInt8(ascii: "."))
        content += body
        return content
    }

    static func hmac(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let result = key.withUnsafeBytes { keyBytes in
            data.withUnsafeBufferPointer { dataBytes in
                HMAC(EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                     dataBytes.baseAddress, dataBytes.count, &mac, &length)
            }
        }
        // HMAC-SHA256 with an in-memory key only fails if OpenSSL itself is broken.
        precondition(result != nil && Int(length) == digestLength, "HMAC-SHA256 failed")
        return Array(mac[..<Int(length)])
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, a.count) == 0 } }
    }
}
