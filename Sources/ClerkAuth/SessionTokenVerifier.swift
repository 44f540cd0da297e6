import COpenSSL
import Foundation

/// Verifies Clerk session tokens (RS256 JWTs) the way Clerk's own backend SDK does, plus `iss`.
public struct SessionTokenVerifier: Sendable {
    /// Real session tokens are about 1 KB; the cap bounds decoding work on hostile input.
    static let maxTokenLength = 16 * 1024

    private let keys: [String?: RSAPublicKey]
    private let authorizedParties: Set<String>
    private let issuer: String?
    private let leeway: TimeInterval

    /// `keys` maps a `kid` to its key; the `nil` entry is used for any kid (the networkless CLERK_JWT_KEY).
    public init(keys: [String?: RSAPublicKey], authorizedParties: [String], issuer: String?, leeway: TimeInterval = 5) {
        self.keys = keys
        self.authorizedParties = Set(authorizedParties.filter { !$0.isEmpty }.map(Self.withoutTrailingSlash))
        self.issuer = issuer.map(Self.withoutTrailingSlash)
        self.leeway = leeway
    }

    public func verify(_ token: String, now: Date = Date()) throws(TokenRejection) -> SessionClaims {
        guard let parts = Self.split(token), let header = Self.object(parts.header),
              let payload = Self.object(parts.payload), let algorithm = header["alg"]?.string else { throw .malformed }
        // Before the signature's shape, so an unsigned `alg: none` token is logged as what it is.
        guard let digest = Self.digest(for: algorithm) else { throw .unsupportedAlgorithm(String(algorithm.prefix(16))) }
        guard let signature = Base64.decode(parts.signature, alphabet: .url, padding: .forbidden),
              !signature.isEmpty else { throw .malformed }
        if let type = header["typ"], type.string != "JWT" { throw .malformed }
        // A critical extension we do not implement must not be silently ignored (RFC 7515 4.1.11).
        if header["crit"] != nil { throw .malformed }

        let kid = header["kid"]
        if let kid, kid.string == nil { throw .malformed }
        guard let key = kid.flatMap({ keys[$0.string] }) ?? keys[nil] else { throw .unknownKey }
        // Claims are read only after the signature holds, so forged tokens learn nothing more.
        guard key.verify(signature: signature, message: Array(parts.signedPart.utf8), digest: digest) else {
            throw .badSignature
        }
        return try claims(payload, now: now.timeIntervalSince1970)
    }

    /// The header's `kid`, to re-fetch a JWKS when it names an unknown key. Not verified.
    public func keyID(of token: String) -> String? {
        guard let parts = Self.split(token), let header = Self.object(parts.header) else { return nil }
        return header["kid"]?.string
    }

    private func claims(_ payload: [String: ClaimValue], now: TimeInterval) throws(TokenRejection) -> SessionClaims {
        guard let expiry = payload["exp"]?.number else { throw .malformed }
        let notBefore = try Self.optionalNumber(payload["nbf"])
        let issuedAt = try Self.optionalNumber(payload["iat"])
        if now >= expiry + leeway { throw .expired }
        if let notBefore, notBefore > now + leeway { throw .notYetValid }
        if let issuedAt, issuedAt > now + leeway { throw .issuedInFuture }

        guard let subject = payload["sub"]?.string, !subject.isEmpty else { throw .missingSubject }
        let sessionID = try Self.optionalString(payload["sid"])
        let party = try Self.optionalString(payload["azp"])
        if let party, !party.isEmpty, !authorizedParties.isEmpty,
           !authorizedParties.contains(Self.withoutTrailingSlash(party)) {
            throw .unauthorizedParty(party)
        }
        if let issuer {
            guard let claimed = payload["iss"]?.string, Self.withoutTrailingSlash(claimed) == issuer else {
                throw .wrongIssuer
            }
        }
        return SessionClaims(userID: subject, sessionID: sessionID, expiresAt: Date(timeIntervalSince1970: expiry),
                             issuedAt: issuedAt.map { Date(timeIntervalSince1970: $0) }, authorizedParty: party)
    }

    private static func digest(for algorithm: String) -> OpaquePointer? {
        switch algorithm {
        case "RS256": return EVP_sha256()
        default: return nil  // pinned: none, HS*, RS384/512, ES*, PS* are refused
        }
    }

    private static func split(_ token: String) -> (header: Substring, payload: Substring, signature: Substring, signedPart: Substring)? {
        guard token.utf8.count <= maxTokenLength else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        return (parts[0], parts[1], parts[2], token[parts[0].startIndex..<parts[1].endIndex])
    }

    private static func object(_ segment: Substring) -> [String: ClaimValue]? {
        guard let bytes = Base64.decode(segment, alphabet: .url, padding: .forbidden) else { return nil }
        return try? JSONDecoder().decode([String: ClaimValue].self, from: Data(bytes))
    }

    private static func optionalNumber(_ value: ClaimValue?) throws(TokenRejection) -> Double? {
        guard let value, value != .null else { return nil }
        guard let number = value.number else { throw .malformed }
        return number
    }

    private static func optionalString(_ value: ClaimValue?) throws(TokenRejection) -> String? {
        guard let value, value != .null else { return nil }
        guard let string = value.string else { throw .malformed }
        return string
    }

    static func withoutTrailingSlash(_ text: String) -> String {
        text.hasSuffix("/") ? String(text.dropLast()) : text
    }
}
