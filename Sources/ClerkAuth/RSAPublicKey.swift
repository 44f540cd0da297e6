import COpenSSL
import Foundation

/// An RSA public key held as an OpenSSL EVP_PKEY. Sendable because the key is never modified after
/// init, and OpenSSL 3 allows concurrent verify operations on one EVP_PKEY.
public final class RSAPublicKey: @unchecked Sendable {   // unchecked: an immutable EVP_PKEY; OpenSSL 3 verifies with it concurrently
    /// Clerk's keys are 2048-bit; anything smaller is a misconfiguration.
    static let minimumBits: Int32 = 2048

    let pkey: OpaquePointer

    /// SPKI ("BEGIN PUBLIC KEY") or PKCS#1 ("BEGIN RSA PUBLIC KEY"). Literal `\n` pairs are turned into
    /// newlines because .env files hold the PEM on one line.
    public convenience init(pem: String) throws {
        let (label, der) = try PEM.decode(pem)
        guard label == "PUBLIC KEY" || label == "RSA PUBLIC KEY" else {
            throw KeyError("expected a PEM 'PUBLIC KEY' or 'RSA PUBLIC KEY', found '\(label)'")
        }
        let key: OpaquePointer? = der.withUnsafeBufferPointer { buffer in
            var pointer = buffer.baseAddress
            return label == "PUBLIC KEY" ? d2i_PUBKEY(nil, &pointer, buffer.count)
                : d2i_PublicKey(EVP_PKEY_RSA, nil, &pointer, buffer.count)
        }
        guard let key else { throw KeyError.openSSL("the PEM public key could not be parsed") }
        try self.init(taking: key)
    }

    /// A JWK's base64url `n` and `e`.
    public convenience init(jwkModulus n: String, exponent e: String) throws {
        guard let modulus = Base64.decode(n, alphabet: .url, padding: .optional), !modulus.isEmpty,
              let exponent = Base64.decode(e, alphabet: .url, padding: .optional), !exponent.isEmpty else {
            throw KeyError("the JWK's n or e is not base64url")
        }
        try self.init(taking: try Self.fromComponents(modulus: modulus, exponent: exponent))
    }

    private init(taking key: OpaquePointer) throws {
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else {
            EVP_PKEY_free(key)
            throw KeyError("the key is not an RSA key")
        }
        let bits = EVP_PKEY_get_bits(key)
        guard bits >= Self.minimumBits else {
            EVP_PKEY_free(key)
            throw KeyError("the RSA key has \(bits) bits; at least \(Self.minimumBits) are required")
        }
        pkey = key
    }

    deinit { EVP_PKEY_free(pkey) }

    /// The key's base64url `n` and `e`, as a JWKS publishes them.
    public func jwkComponents() throws -> (modulus: String, exponent: String) {
        func component(_ name: String) throws -> String {
            var number: OpaquePointer? = nil
            guard EVP_PKEY_get_bn_param(pkey, name, &number) == 1, let number else {
                throw KeyError.openSSL("could not read the RSA parameter \(name)")
            }
            defer { BN_free(number) }
            var bytes = [UInt8](repeating: 0, count: Int((BN_num_bits(number) + 7) / 8))
            _ = BN_bn2bin(number, &bytes)
            return Base64.encode(bytes, alphabet: .url)
        }
        return (try component(OSSL_PKEY_PARAM_RSA_N), try component(OSSL_PKEY_PARAM_RSA_E))
    }

    /// Checks `signature` over `message` with RSASSA-PKCS1-v1_5 and the given digest.
    func verify(signature: [UInt8], message: [UInt8], digest: OpaquePointer) -> Bool {
        guard let context = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(context) }
        let valid = EVP_DigestVerifyInit(context, nil, digest, nil, pkey) == 1
            && signature.withUnsafeBufferPointer { sig in
                message.withUnsafeBufferPointer { msg in
                    EVP_DigestVerify(context, sig.baseAddress, sig.count, msg.baseAddress, msg.count) == 1
                }
            }
        // A bad signature leaves errors queued; clear them for the thread's next TLS call.
        if !valid { ERR_clear_error() }
        return valid
    }

    private static func fromComponents(modulus: [UInt8], exponent: [UInt8]) throws -> OpaquePointer {
        guard let n = BN_bin2bn(modulus, Int32(modulus.count), nil) else { throw KeyError.openSSL("bad modulus") }
        defer { BN_free(n) }
        guard let e = BN_bin2bn(exponent, Int32(exponent.count), nil) else { throw KeyError.openSSL("bad exponent") }
        defer { BN_free(e) }
        // The builder and its params keep the name pointers, so they must outlive both (a Swift
        // String bridged to char * would only live for the call).
        guard let nName = strdup(OSSL_PKEY_PARAM_RSA_N), let eName = strdup(OSSL_PKEY_PARAM_RSA_E) else {
            throw KeyError("out of memory")
        }
        defer { free(nName); free(eName) }
        guard let builder = OSSL_PARAM_BLD_new() else { throw KeyError.openSSL("out of memory") }
        defer { OSSL_PARAM_BLD_free(builder) }
        guard OSSL_PARAM_BLD_push_BN(builder, nName, n) == 1,
              OSSL_PARAM_BLD_push_BN(builder, eName, e) == 1,
              let params = OSSL_PARAM_BLD_to_param(builder) else { throw KeyError.openSSL("could not build RSA parameters") }
        defer { OSSL_PARAM_free(params) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "RSA", nil) else { throw KeyError.openSSL("RSA unavailable") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer? = nil
        let selection = Int32(OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS
            | OSSL_KEYMGMT_SELECT_OTHER_PARAMETERS)  // EVP_PKEY_PUBLIC_KEY, a macro Swift cannot import
        guard EVP_PKEY_fromdata_init(context) == 1, EVP_PKEY_fromdata(context, &key, selection, params) == 1,
              let key else { throw KeyError.openSSL("the JWK is not a usable RSA key") }
        return key
    }
}
