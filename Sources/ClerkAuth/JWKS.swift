import Foundation

/// Parses a JSON Web Key Set as Clerk serves it at `/.well-known/jwks.json`.
public struct JWKS {
    /// RSA signing keys by `kid`. Keys of other types or uses, or without a kid, are skipped;
    /// a set with no usable key is an error, since no token could ever verify.
    public static func parse(_ json: [UInt8]) throws -> [String: RSAPublicKey] {
        guard case .object(let document)? = try? JSONDecoder().decode(ClaimValue.self, from: Data(json)),
              case .array(let entries)? = document["keys"] else {
            throw KeyError("the JWKS is not a JSON object with a 'keys' array")
        }
        var keys: [String: RSAPublicKey] = [:]
        for case .object(let entry) in entries {
            guard entry["kty"]?.string == "RSA", let kid = entry["kid"]?.string,
                  let n = entry["n"]?.string, let e = entry["e"]?.string else { continue }
            if let use = entry["use"], use.string != "sig" { continue }
            if let alg = entry["alg"], !["RS256", "RS384", "RS512"].contains(alg.string ?? "") { continue }
            keys[kid] = try RSAPublicKey(jwkModulus: n, exponent: e)
        }
        guard !keys.isEmpty else { throw KeyError("the JWKS holds no RSA signing key with a kid") }
        return keys
    }
}
