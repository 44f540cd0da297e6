import COpenSSL
import Foundation

/// A local RSA key pair that stands in for a Clerk instance in development and tests: the server
/// verifies with `public.pem`, the dev tools mint session tokens with `private.pem`.
public struct DevelopmentKeys: Sendable {
    public static let privateKeyFile = "private.pem"
    public static let publicKeyFile = "public.pem"
    /// The development webhook secret (`make run` gives it to the server, `send-webhook` signs with it).
    public static let webhookSecretFile = "webhook-secret"

    /// PKCS#8 ("BEGIN PRIVATE KEY").
    public let privateKeyPEM: String
    /// SPKI ("BEGIN PUBLIC KEY"), the form of Clerk's CLERK_JWT_KEY.
    public let publicKeyPEM: String

    public init(privateKeyPEM: String, publicKeyPEM: String) {
        self.privateKeyPEM = privateKeyPEM
        self.publicKeyPEM = publicKeyPEM
    }

    /// A fresh RSA-2048 pair.
    public static func generate() throws -> DevelopmentKeys {
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "RSA", nil) else { throw KeyError.openSSL("RSA unavailable") }
        defer { EVP_PKEY_CTX_free(context) }
        var key: OpaquePointer? = nil
        guard EVP_PKEY_keygen_init(context) == 1, EVP_PKEY_CTX_set_rsa_keygen_bits(context, 2048) == 1,
              EVP_PKEY_generate(context, &key) == 1, let key else {
            throw KeyError.openSSL("RSA key generation failed")
        }
        defer { EVP_PKEY_free(key) }
        // OpenSSL 3 writes PKCS#8 here (the traditional form needs the deprecated RSA writer).
        let privatePEM = try PEM.write { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
        let publicPEM = try PEM.write { PEM_write_bio_PUBKEY($0, key) }
        return DevelopmentKeys(privateKeyPEM: privatePEM, publicKeyPEM: publicPEM)
    }

    /// Writes both files, creating the directory (0700) if needed; the private key is 0600 from the start.
    public func write(to directory: URL) throws {
        try Self.makeDirectory(directory)
        try Self.writeFile(directory.appendingPathComponent(Self.privateKeyFile).path, privateKeyPEM, mode: 0o600)
        try Self.writeFile(directory.appendingPathComponent(Self.publicKeyFile).path, publicKeyPEM, mode: 0o644)
    }

    public static func load(from directory: URL) throws -> DevelopmentKeys {
        func read(_ name: String) throws -> String {
            let url = directory.appendingPathComponent(name)
            do { return try String(contentsOf: url, encoding: .utf8) } catch {
                throw KeyError("cannot read \(url.path): \(error.localizedDescription)")
            }
        }
        let keys = DevelopmentKeys(privateKeyPEM: try read(privateKeyFile), publicKeyPEM: try read(publicKeyFile))
        _ = try keys.publicKey()
        return keys
    }

    /// Loads the pair from `directory`, generating and writing it on first use.
    public static func loadOrCreate(in directory: URL) throws -> DevelopmentKeys {
        let privatePath = directory.appendingPathComponent(privateKeyFile).path
        if FileManager.default.fileExists(atPath: privatePath) { return try load(from: directory) }
        let keys = try generate()
        try keys.write(to: directory)
        return keys
    }

    public func publicKey() throws -> RSAPublicKey { try RSAPublicKey(pem: publicKeyPEM) }

    /// The local webhook secret in `directory` (`whsec_` + base64 of 24 random bytes), created on
    /// first use with mode 0600: development without a Clerk account never needs Clerk's secret.
    public static func loadOrCreateWebhookSecret(in directory: URL) throws -> String {
        let path = directory.appendingPathComponent(webhookSecretFile).path
        if FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw KeyError("cannot read \(path)") }
            let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
            do { _ = try WebhookSecret(parsing: secret) } catch { throw KeyError("\(path) is not a webhook secret (\(error)); delete it to make a new one") }
            return secret
        }
        var generator = SystemRandomNumberGenerator()
        let secret = "whsec_" + Base64.encode((0..<24).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try Self.makeDirectory(directory)
        try writeFile(path, secret + "\n", mode: 0o600)
        return secret
    }

    /// A real RS256 session token shaped like Clerk's: `nbf` 10 s before `iat`, `exp` = `iat` + lifetime.
    public static func mint(privateKeyPEM: String, userID: String, sessionID: String?, lifetime: TimeInterval,
                            azp: String?, issuer: String?, kid: String?, now: Date) throws -> String {
        let issuedAt = Int(now.timeIntervalSince1970.rounded(.down))
        var claims: [String: Any] = ["sub": userID, "iat": issuedAt, "nbf": issuedAt - 10,
                                     "exp": issuedAt + Int(lifetime.rounded(.down))]
        claims["sid"] = sessionID
        claims["azp"] = azp
        claims["iss"] = issuer
        var header: [String: Any] = ["alg": "RS256", "typ": "JWT"]
        header["kid"] = kid
        return try signToken(privateKeyPEM: privateKeyPEM, headerJSON: json(header), payloadJSON: json(claims))
    }

    /// Signs arbitrary header and payload JSON with RS256, whatever the header says; tests use it to
    /// build tokens a well-behaved minter never would.
    public static func signToken(privateKeyPEM: String, headerJSON: String, payloadJSON: String) throws -> String {
        let signedPart = Base64.encode(Array(headerJSON.utf8), alphabet: .url) + "."
            + Base64.encode(Array(payloadJSON.utf8), alphabet: .url)
        let signature = try sign(Array(signedPart.utf8), privateKeyPEM: privateKeyPEM)
        return signedPart + "." + Base64.encode(signature, alphabet: .url)
    }

    private static func sign(_ message: [UInt8], privateKeyPEM: String) throws -> [UInt8] {
        let pem = Array(PEM.normalize(privateKeyPEM).utf8)
        let key: OpaquePointer? = pem.withUnsafeBytes { buffer in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return PEM_read_bio_PrivateKey(bio, nil, nil, nil)
        }
        guard let key else { throw KeyError.openSSL("the private key PEM could not be parsed") }
        defer { EVP_PKEY_free(key) }
        guard EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA else { throw KeyError("the private key is not an RSA key") }
        guard let context = EVP_MD_CTX_new() else { throw KeyError.openSSL("out of memory") }
        defer { EVP_MD_CTX_free(context) }
        var signature = [UInt8](repeating: 0, count: Int(EVP_PKEY_get_size(key)))
        var length = signature.count
        let status = message.withUnsafeBufferPointer { buffer in
            EVP_DigestSignInit(context, nil, EVP_sha256(), nil, key) == 1
                && EVP_DigestSign(context, &signature, &length, buffer.baseAddress, buffer.count) == 1
        }
        guard status else { throw KeyError.openSSL("RS256 signing failed") }
        return Array(signature[..<length])
    }

    private static func json(_ object: [String: Any]) throws -> String {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return String(decoding: data, as: UTF8.self)
    }

    /// The directory (0700) and its parents; a failure is one plain line, not Foundation's error dump.
    private static func makeDirectory(_ directory: URL) throws {
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError
            let reason = underlying.flatMap { $0.domain == NSPOSIXErrorDomain ? String(cString: strerror(Int32($0.code))) : nil }
            throw KeyError("cannot create the directory \(directory.path)\(reason.map { ": \($0)" } ?? "")")
        }
    }

    private static func writeFile(_ path: String, _ text: String, mode: mode_t) throws {
        // open(2) with the mode, so the private key is never readable by others, even briefly.
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw KeyError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        // An existing file keeps its old mode through O_TRUNC; tighten it.
        guard fchmod(descriptor, mode) == 0 else { throw KeyError("cannot chmod \(path): \(String(cString: strerror(errno)))") }
        try FileHandle(fileDescriptor: descriptor, closeOnDealloc: false).write(contentsOf: Data(text.utf8))
    }
}
