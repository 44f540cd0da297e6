import ClerkAuth
import Foundation
import FuzzSupport

// The `auth` / `refresh` token field. Two shapes of input:
// - any bytes: taken as the token itself (splitting, base64url, header JSON, key lookup, signature);
// - `header JSON` NUL `payload JSON`: the harness signs them with its own key, so the fuzzer also
//   reaches the claims checks that only run after a good signature.
// The key pair is made once (harness set-up, not input).
private let keys = try! DevelopmentKeys.generate()
private let verifier: SessionTokenVerifier = {
    let key = try! RSAPublicKey(pem: keys.publicKeyPEM)
    return SessionTokenVerifier(keys: [nil: key, "kid-1": key], authorizedParties: ["http://localhost:5173"],
                                issuer: "https://clerk.example")
}()
private let now = Date(timeIntervalSince1970: 1_700_000_000)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var token = String(decoding: bytes, as: UTF8.self)
    if let nul = bytes.firstIndex(of: 0) {
        let header = String(decoding: bytes[..<nul], as: UTF8.self)
        let payload = String(decoding: bytes[(nul + 1)...], as: UTF8.self)
        guard let signed = try? DevelopmentKeys.signToken(privateKeyPEM: keys.privateKeyPEM, headerJSON: header,
                                                          payloadJSON: payload) else { return 0 }
        token = signed
    }
    _ = verifier.keyID(of: token)
    _ = try? verifier.verify(token, now: now)
    return 0
}

runFuzzer(fuzz)
