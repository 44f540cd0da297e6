@testable import ClerkAuth
import Foundation
import Testing

/// Two key pairs generated once: RSA-2048 generation is too slow to repeat per test.
struct KeyFixture: Sendable {
    let keys: DevelopmentKeys
    let other: DevelopmentKeys
    let publicKey: RSAPublicKey

    static let shared = Result { try KeyFixture() }
    static func get() throws -> KeyFixture { try shared.get() }

    private init() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try DevelopmentKeys.generate().write(to: directory)
        keys = try DevelopmentKeys.load(from: directory)
        other = try DevelopmentKeys.generate()
        publicKey = try keys.publicKey()
    }
}

func temporaryDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("clerk-auth-tests-\(UUID().uuidString)")
}

let origin = "http://localhost:5173"
let issuerURL = "https://clerk.chat.example.dev"
let clock = Date(timeIntervalSince1970: 1_763_289_000)

func base64url(_ text: String) -> String { Base64.encode(Array(text.utf8), alphabet: .url) }

@Suite struct SessionTokenVerifierTests {
    let fixture: KeyFixture
    let verifier: SessionTokenVerifier

    init() throws {
        fixture = try KeyFixture.get()
        verifier = SessionTokenVerifier(keys: [nil: fixture.publicKey], authorizedParties: [origin], issuer: issuerURL)
    }

    func mint(keys: DevelopmentKeys? = nil, azp: String? = origin, issuer: String? = issuerURL,
              kid: String? = "ins_kid_1", now: Date = clock) throws -> String {
        try DevelopmentKeys.mint(privateKeyPEM: (keys ?? fixture.keys).privateKeyPEM, userID: "user_2abc", sessionID: "sess_2xyz",
                                 lifetime: 60, azp: azp, issuer: issuer, kid: kid, now: now)
    }

    /// Signs with the fixture key; `payload` is raw JSON so tests can build claims a minter never would.
    func token(header: String = #"{"alg":"RS256","typ":"JWT"}"#, _ payload: String) throws -> String {
        try DevelopmentKeys.signToken(privateKeyPEM: fixture.keys.privateKeyPEM, headerJSON: header, payloadJSON: payload)
    }

    let t = Int(clock.timeIntervalSince1970)

    // MARK: Keys on disk

    @Test func keyPairIsWrittenAsPKCS8AndSPKIWithAPrivateMode() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let created = try DevelopmentKeys.loadOrCreate(in: directory)
        #expect(created.privateKeyPEM.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        #expect(created.publicKeyPEM.hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        let path = directory.appendingPathComponent(DevelopmentKeys.privateKeyFile).path
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        let again = try DevelopmentKeys.loadOrCreate(in: directory)
        #expect(again.privateKeyPEM == created.privateKeyPEM && again.publicKeyPEM == created.publicKeyPEM)
    }

    @Test func rewritingTightensAnExistingPrivateKeyFile() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try fixture.keys.write(to: directory)
        let path = directory.appendingPathComponent(DevelopmentKeys.privateKeyFile).path
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)
        try fixture.keys.write(to: directory)
        #expect((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue == 0o600)
    }

    // MARK: Accepted tokens

    @Test func mintedTokenVerifiesAndYieldsItsClaims() throws {
        let claims = try verifier.verify(try mint(), now: clock)
        #expect(claims == SessionClaims(userID: "user_2abc", sessionID: "sess_2xyz", expiresAt: clock.addingTimeInterval(60),
                                        issuedAt: clock, authorizedParty: origin))
        #expect(verifier.keyID(of: try mint()) == "ins_kid_1")
    }

    @Test func leewayAllowsFiveSecondsOfSkew() throws {
        #expect(try verifier.verify(try mint(), now: clock.addingTimeInterval(64)).userID == "user_2abc")
        #expect(try verifier.verify(try mint(now: clock.addingTimeInterval(4)), now: clock).userID == "user_2abc")
    }

    @Test func unknownHeaderParametersAreFine() throws {
        let header = #"{"alg":"RS256","typ":"JWT","kid":"ins_kid_1","cat":"cl_B7d4PD111AAA","x-new":{"a":1}}"#
        let open = SessionTokenVerifier(keys: [nil: fixture.publicKey], authorizedParties: [origin], issuer: nil)
        let claims = try open.verify(try token(header: header, #"{"sub":"user_1","exp":\#(t + 60)}"#), now: clock)
        #expect(claims == SessionClaims(userID: "user_1", sessionID: nil, expiresAt: clock.addingTimeInterval(60),
                                        issuedAt: nil, authorizedParty: nil))
    }

    @Test func authorizedPartyIsCheckedOnlyWhenBothSidesHaveOne() throws {
        #expect(try verifier.verify(try mint(azp: nil), now: clock).authorizedParty == nil)
        #expect(try verifier.verify(try mint(azp: origin + "/"), now: clock).userID == "user_2abc")
        let open = SessionTokenVerifier(keys: [nil: fixture.publicKey], authorizedParties: [], issuer: nil)
        #expect(try open.verify(try mint(azp: "https://anything.example"), now: clock).userID == "user_2abc")
        let slashed = SessionTokenVerifier(keys: [nil: fixture.publicKey], authorizedParties: [origin + "/"], issuer: nil)
        #expect(try slashed.verify(try mint(), now: clock).userID == "user_2abc")
    }

    @Test func pemWithLiteralBackslashNVerifies() throws {
        let oneLine = fixture.keys.publicKeyPEM.replacingOccurrences(of: "\n", with: "\\n")
        #expect(!oneLine.contains("\n"))
        let key = try RSAPublicKey(pem: "\"" + oneLine + "\"")
        let verifier = SessionTokenVerifier(keys: [nil: key], authorizedParties: [origin], issuer: issuerURL)
        #expect(try verifier.verify(try mint(), now: clock).userID == "user_2abc")
    }

    @Test func pkcs1RSAPublicKeyPEMVerifies() throws {
        let (n, e) = try fixture.publicKey.jwkComponents()
        let pem = pkcs1PEM(modulus: Base64.decode(n, alphabet: .url, padding: .forbidden)!,
                           exponent: Base64.decode(e, alphabet: .url, padding: .forbidden)!)
        #expect(pem.hasPrefix("-----BEGIN RSA PUBLIC KEY-----"))
        let verifier = SessionTokenVerifier(keys: [nil: try RSAPublicKey(pem: pem)], authorizedParties: [], issuer: nil)
        #expect(try verifier.verify(try mint(), now: clock).userID == "user_2abc")
    }

    @Test func jwksBuiltFromTheKeysModulusAndExponentVerifies() throws {
        let (n, e) = try fixture.publicKey.jwkComponents()
        #expect(e == "AQAB")
        let json = #"{"keys":[{"kty":"EC","kid":"ec","crv":"P-256","x":"AA","y":"AA"},"#
            + #"{"kty":"RSA","kid":"enc","use":"enc","n":"\#(n)","e":"\#(e)"},"#
            + #"{"kty":"RSA","kid":"ins_kid_1","n":"\#(n)","e":"\#(e)","alg":"RS256","use":"sig"}]}"#
        let keys = try JWKS.parse(Array(json.utf8))
        #expect(keys.keys.sorted() == ["ins_kid_1"])
        let verifier = SessionTokenVerifier(keys: Dictionary(uniqueKeysWithValues: keys.map { ($0.key as String?, $0.value) }),
                                            authorizedParties: [origin], issuer: issuerURL)
        #expect(try verifier.verify(try mint(), now: clock).userID == "user_2abc")
        #expect(throws: TokenRejection.unknownKey) { try verifier.verify(try mint(kid: "ins_kid_2"), now: clock) }
        #expect(throws: TokenRejection.unknownKey) { try verifier.verify(try mint(kid: nil), now: clock) }
        #expect(verifier.keyID(of: try mint(kid: "ins_kid_2")) == "ins_kid_2")
    }

    @Test(arguments: ["", "[]", #"{"keys":[]}"#, #"{"keys":[{"kty":"RSA","kid":"k","n":"!!","e":"AQAB"}]}"#])
    func unusableJWKSIsAnError(_ json: String) {
        #expect(throws: KeyError.self) { try JWKS.parse(Array(json.utf8)) }
    }

    @Test(arguments: ["", "not a pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"])
    func badPublicKeyPEMIsAnError(_ pem: String) {
        #expect(throws: KeyError.self) { try RSAPublicKey(pem: pem) }
    }

    @Test func privateKeyPEMIsRefusedAsAPublicKey() throws {
        let error = #expect(throws: KeyError.self) { try RSAPublicKey(pem: fixture.keys.privateKeyPEM) }
        #expect(error?.description.contains("PRIVATE KEY") == true)
    }

    // MARK: Refused tokens

    @Test func expiredBeyondLeeway() throws {
        #expect(throws: TokenRejection.expired) { try verifier.verify(try mint(), now: clock.addingTimeInterval(66)) }
    }

    @Test func notBeforeInTheFuture() throws {
        let payload = #"{"sub":"user_1","iat":\#(t),"nbf":\#(t + 30),"exp":\#(t + 60)}"#
        #expect(throws: TokenRejection.notYetValid) { try verifier.verify(try token(payload), now: clock) }
    }

    @Test func issuedInTheFuture() throws {
        let payload = #"{"sub":"user_1","iat":\#(t + 30),"exp":\#(t + 90)}"#
        #expect(throws: TokenRejection.issuedInFuture) { try verifier.verify(try token(payload), now: clock) }
    }

    @Test func signedByAnotherKey() throws {
        #expect(throws: TokenRejection.badSignature) { try verifier.verify(try mint(keys: fixture.other), now: clock) }
    }

    @Test func unsignedAlgNoneIsRefused() throws {
        let payload = base64url(#"{"sub":"user_1","exp":\#(t + 60)}"#)
        for header in [#"{"alg":"none","typ":"JWT"}"#, #"{"alg":"None"}"#] {
            #expect(throws: TokenRejection.unsupportedAlgorithm(header.contains("None") ? "None" : "none")) {
                try verifier.verify(base64url(header) + "." + payload + ".", now: clock)
            }
        }
    }

    @Test(arguments: ["HS256", "HS384", "HS512", "ES256", "PS256"])
    func hmacSignedWithThePublicKeyPEMIsRefused(_ algorithm: String) throws {
        // The classic key-confusion attack: HMAC keyed with the public PEM bytes.
        let signedPart = base64url(#"{"alg":"\#(algorithm)","typ":"JWT"}"#) + "." + base64url(#"{"sub":"user_1","exp":\#(t + 60)}"#)
        let mac = WebhookVerifier.hmac(key: Array(fixture.keys.publicKeyPEM.utf8), Array(signedPart.utf8))
        #expect(throws: TokenRejection.unsupportedAlgorithm(algorithm)) {
            try verifier.verify(signedPart + "." + Base64.encode(mac, alphabet: .url), now: clock)
        }
    }

    @Test func tamperedPayload() throws {
        let parts = try mint().split(separator: ".").map(String.init)
        let forged = base64url(#"{"azp":"\#(origin)","exp":\#(t + 3600),"iat":\#(t),"iss":"\#(issuerURL)","sub":"user_admin"}"#)
        #expect(throws: TokenRejection.badSignature) { try verifier.verify(parts[0] + "." + forged + "." + parts[2], now: clock) }
        // One flipped signature character also fails.
        var signature = Array(parts[2])
        signature[10] = signature[10] == "A" ? "B" : "A"
        #expect(throws: TokenRejection.badSignature) {
            try verifier.verify(parts[0] + "." + parts[1] + "." + String(signature), now: clock)
        }
    }

    @Test(arguments: [#"{"exp":EXP}"#, #"{"sub":"","exp":EXP}"#, #"{"sub":42,"exp":EXP}"#, #"{"sub":null,"exp":EXP}"#])
    func missingSubject(_ payload: String) throws {
        let json = payload.replacingOccurrences(of: "EXP", with: String(t + 60))
        #expect(throws: TokenRejection.missingSubject) { try verifier.verify(try token(json), now: clock) }
    }

    @Test func wrongAuthorizedParty() throws {
        #expect(throws: TokenRejection.unauthorizedParty("https://evil.example")) {
            try verifier.verify(try mint(azp: "https://evil.example"), now: clock)
        }
        #expect(throws: TokenRejection.unauthorizedParty("http://localhost:5174")) {
            try verifier.verify(try mint(azp: "http://localhost:5174"), now: clock)
        }
    }

    @Test func wrongOrMissingIssuer() throws {
        #expect(throws: TokenRejection.wrongIssuer) { try verifier.verify(try mint(issuer: "https://other.clerk.accounts.dev"), now: clock) }
        #expect(throws: TokenRejection.wrongIssuer) { try verifier.verify(try mint(issuer: nil), now: clock) }
        #expect(try verifier.verify(try mint(issuer: issuerURL + "/"), now: clock).userID == "user_2abc")
    }

    @Test(arguments: [
        #"{"alg":"RS256","typ":"at+jwt"}"#, #"{"alg":"RS256","typ":7}"#, #"{"alg":"RS256","kid":5}"#,
        #"{"alg":"RS256","crit":["exp"]}"#, #"{"typ":"JWT"}"#, #"{"alg":256}"#, #"["alg"]"#,
    ])
    func malformedHeader(_ header: String) throws {
        #expect(throws: TokenRejection.malformed) {
            try verifier.verify(try token(header: header, #"{"sub":"user_1","exp":\#(t + 60)}"#), now: clock)
        }
    }

    @Test(arguments: [#"{"sub":"user_1"}"#, #"{"sub":"user_1","exp":"soon"}"#, #"{"sub":"user_1","exp":1,"nbf":"x"}"#,
                      #"{"sub":"user_1","exp":EXP,"sid":7}"#, #"{"sub":"user_1","exp":EXP,"azp":true}"#, "not json"])
    func malformedPayload(_ payload: String) throws {
        let json = payload.replacingOccurrences(of: "EXP", with: String(t + 60))
        #expect(throws: TokenRejection.malformed) { try verifier.verify(try token(json), now: clock) }
    }

    @Test func malformedShapes() throws {
        let good = try mint()
        let parts = good.split(separator: ".").map(String.init)
        let shapes = ["", ".", "..", "a.b", parts[0] + "." + parts[1], good + ".x", parts[0] + "=." + parts[1] + "." + parts[2],
                      parts[0] + "." + parts[1] + "." + parts[2] + "=", parts[0] + "." + parts[1] + ".",
                      String(repeating: "a", count: 20_000) + "." + parts[1] + "." + parts[2]]
        for shape in shapes {
            #expect(throws: TokenRejection.malformed, "\(shape.prefix(40))") { try verifier.verify(shape, now: clock) }
        }
        #expect(verifier.keyID(of: "garbage") == nil)
    }

    // MARK: Independent implementation (PyJWT)

    @Test(.enabled(if: PyJWT.available, "python3 with pyjwt and cryptography"), arguments: ["RS256"])
    func tokenMintedByPyJWTVerifies(_ algorithm: String) throws {
        let token = try PyJWT.run("""
            import jwt, os, time
            now = int(time.time())
            claims = {"sub": "user_py", "sid": "sess_py", "iat": now, "nbf": now - 10, "exp": now + 60,
                      "azp": os.environ["AZP"], "iss": os.environ["ISS"]}
            print(jwt.encode(claims, os.environ["PRIVATE_PEM"], algorithm=os.environ["ALG"], headers={"kid": "ins_py"}))
            """, environment: ["PRIVATE_PEM": fixture.keys.privateKeyPEM, "ALG": algorithm, "AZP": origin, "ISS": issuerURL])
        let claims = try verifier.verify(token)
        #expect(claims.userID == "user_py" && claims.sessionID == "sess_py" && claims.authorizedParty == origin)
        #expect(verifier.keyID(of: token) == "ins_py")
        // PyJWT signing with the other key must fail here too.
        let forged = try PyJWT.run("""
            import jwt, os, time
            print(jwt.encode({"sub": "user_py", "exp": int(time.time()) + 60}, os.environ["PRIVATE_PEM"], algorithm="RS256"))
            """, environment: ["PRIVATE_PEM": fixture.other.privateKeyPEM])
        #expect(throws: TokenRejection.badSignature) { try verifier.verify(forged) }
    }

    /// The algorithm is pinned to RS256, as the channel's contract says: RS384/RS512 are refused too.
    @Test(.enabled(if: PyJWT.available, "python3 with pyjwt and cryptography"), arguments: ["RS384", "RS512"])
    func otherRSAAlgorithmsAreRefused(_ algorithm: String) throws {
        let token = try PyJWT.run("""
            import jwt, os, time
            now = int(time.time())
            print(jwt.encode({"sub": "user_py", "iat": now, "exp": now + 60}, os.environ["PRIVATE_PEM"], algorithm=os.environ["ALG"], headers={"kid": "ins_py"}))
            """, environment: ["PRIVATE_PEM": fixture.keys.privateKeyPEM, "ALG": algorithm])
        #expect(throws: TokenRejection.unsupportedAlgorithm(algorithm)) { try verifier.verify(token) }
    }

    @Test(.enabled(if: PyJWT.available, "python3 with pyjwt and cryptography"))
    func tokenMintedInSwiftVerifiesWithPyJWT() throws {
        let token = try mint(now: Date())
        let output = try PyJWT.run("""
            import jwt, os
            header = jwt.get_unverified_header(os.environ["TOKEN"])
            claims = jwt.decode(os.environ["TOKEN"], os.environ["PUBLIC_PEM"], algorithms=["RS256"], issuer=os.environ["ISS"],
                                options={"require": ["exp", "iat", "nbf", "sub"]})
            print(header["alg"], header["typ"], header["kid"], claims["sub"], claims["sid"], claims["azp"], claims["exp"] - claims["iat"])
            """, environment: ["TOKEN": token, "PUBLIC_PEM": fixture.keys.publicKeyPEM, "ISS": issuerURL])
        #expect(output == "RS256 JWT ins_kid_1 user_2abc sess_2xyz \(origin) 60")
    }

    @Test func reasonsAreSnakeCase() {
        let all: [TokenRejection] = [.malformed, .unsupportedAlgorithm("HS256"), .unknownKey, .badSignature, .expired, .notYetValid,
                                     .issuedInFuture, .missingSubject, .unauthorizedParty("x"), .wrongIssuer]
        for rejection in all { #expect(rejection.reason.allSatisfy { $0.isLowercase || $0 == "_" }, "\(rejection)") }
        #expect(Set(all.map(\.reason)).count == all.count)
    }
}

/// PKCS#1 RSAPublicKey DER (SEQUENCE { INTEGER n, INTEGER e }) in PEM, built independently of OpenSSL.
func pkcs1PEM(modulus: [UInt8], exponent: [UInt8]) -> String {
    func length(_ count: Int) -> [UInt8] {
        if count < 128 { return [UInt8(count)] }
        var bytes: [UInt8] = []
        var rest = count
        while rest > 0 { bytes.insert(UInt8(rest & 0xFF), at: 0); rest >>= 8 }
        return [0x80 | UInt8(bytes.count)] + bytes
    }
    func integer(_ value: [UInt8]) -> [UInt8] {
        let body = value.first.map { $0 & 0x80 != 0 } == true ? [0] + value : value
        return [0x02] + length(body.count) + body
    }
    let content = integer(modulus) + integer(exponent)
    let base64 = Array(Base64.encode([0x30] + length(content.count) + content))
    let lines = stride(from: 0, to: base64.count, by: 64).map { String(base64[$0..<min($0 + 64, base64.count)]) }
    return "-----BEGIN RSA PUBLIC KEY-----\n" + lines.joined(separator: "\n") + "\n-----END RSA PUBLIC KEY-----\n"
}

/// Runs python3 with PyJWT, an implementation independent of this package.
enum PyJWT {
    static let available: Bool = (try? run("import jwt, cryptography")) != nil

    struct Failure: Error, CustomStringConvertible { let description: String }

    /// Runs `script`, returning its trimmed standard output; a non-zero exit is an error.
    static func run(_ script: String, environment: [String: String] = [:]) throws -> String {
        let process = Process()
        // The project's virtual environment (make test installs PyJWT there), else python3 on the PATH.
        let venv = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".venv/bin/python").path
        if FileManager.default.isExecutableFile(atPath: venv) {
            process.executableURL = URL(fileURLWithPath: venv)
            process.arguments = ["-c", script]
        } else {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script]
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        // Read before waiting so a full pipe cannot block the child.
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "python3 exited \(process.terminationStatus): \(String(decoding: err, as: UTF8.self))")
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
