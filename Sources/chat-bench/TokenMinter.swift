import ClerkAuth
import COpenSSL
import Foundation

/// Mints RS256 session tokens shaped exactly like `DevelopmentKeys.mint`, with the private key parsed
/// once: parsing the PEM costs several times the signature, and the scenarios need thousands of tokens.
struct MintError: Error { let message: String }

final class TokenMinter: @unchecked Sendable {   // unchecked: an immutable EVP_PKEY; OpenSSL 3 signs with it concurrently
    private let key: OpaquePointer

    init(privateKeyPEM: String) throws {
        let pem = Array(privateKeyPEM.utf8)
        let parsed: OpaquePointer? = pem.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let parsed else { throw MintError(message: "the private key PEM could not be parsed") }
        key = parsed
    }

    deinit { EVP_PKEY_free(key) }

    /// Same claims and header as `DevelopmentKeys.mint` (sorted keys): `nbf` 10 s before `iat`.
    func mint(userID: String, sessionID: String, lifetime: Int, now: Date = Date()) throws -> String {
        let iat = Int(now.timeIntervalSince1970.rounded(.down))
        let header = #"{"alg":"RS256","typ":"JWT"}"#
        let payload = "{\"exp\":\(iat + lifetime),\"iat\":\(iat),\"nbf\":\(iat - 10),\"sid\":\(Self.quote(sessionID)),\"sub\":\(Self.quote(userID))}"
        let signed = Self.base64url(Array(header.utf8)) + "." + Self.base64url(Array(payload.utf8))
        return signed + "." + Self.base64url(try sign(Array(signed.utf8)))
    }

    private func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard let context = EVP_MD_CTX_new() else { throw MintError(message: "out of memory") }
        defer { EVP_MD_CTX_free(context) }
        var signature = [UInt8](repeating: 0, count: Int(EVP_PKEY_get_size(key)))
        var length = signature.count
        let ok = message.withUnsafeBufferPointer { buffer in
            EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1
                && EVP_DigestSign(context, &signature, &length, buffer.baseAddress, buffer.count) == 1
        }
        guard ok else { throw MintError(message: "RS256 signing failed") }
        return Array(signature[..<length])
    }

    private static func quote(_ s: String) -> String {
        let data = try! JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }

    static func base64url(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }
}
