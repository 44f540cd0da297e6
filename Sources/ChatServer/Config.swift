import ClerkAuth
import EnvFile
import Foundation
import Logging
import MongoStore

/// A setting that cannot be used: start-up stops with one line naming the variable.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let variable: String
    public let problem: String
    /// Always one line: control characters in a quoted value are escaped.
    public var description: String { Self.oneLine("\(variable): \(problem)") }

    /// A value as an error line shows it: quoted, control characters escaped, at most 80 characters.
    static func quote(_ value: String) -> String {
        let shown = value.count > 80 ? value.prefix(77) + "..." : Substring(value)
        return "'" + oneLine(String(shown)) + "'"
    }

    static func oneLine(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar == "\u{2028}" || scalar == "\u{2029}" {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}

/// The server's settings, from the environment and a `.env` file (the environment wins). Variable
/// names are the Node backend's, so its `server/.env` works unchanged.
public struct Config {
    public enum Environment: String, Sendable { case development, production, test }

    public var environment: Environment
    public var port: Int
    public var host: String?
    public var mongoURI: MongoURI
    /// False when MONGODB_URI was not set (`make run` then starts the embedded database).
    public var mongoURIConfigured: Bool
    public var clientURL: String
    public var clerkPublishableKey: String?
    public var clerkSecretKey: String?
    /// Clerk's Backend API base, for backfill-users.
    public var clerkAPIURL: URL
    /// nil: webhooks are not configured (503 in development, fatal in production).
    public var webhookVerifier: WebhookVerifier?
    public var webhookMaxBodyBytes: Int
    public var webhookBodyTimeoutSeconds: Int
    public var webhookMaxInflightBytes: Int
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    public var databaseWorkers: Int
    public var databaseQueueLimit: Int
    public var shutdownGraceSeconds: Int
    public var logLevel: Logger.Level
    public var channel: ChannelSettings
    /// `WEB_ROOT`: the directory holding `web/` and `clients/js/` (nil: looked for, see `WebApp.locate`).
    public var webRoot: String?
    /// The development private key, when the server trusts exactly the local key pair (development or
    /// test, no Clerk instance configured): only then does `POST /dev/token` exist.
    public var devSigningKey: String?
    /// Lines to log at start-up (development: missing secrets).
    public var warnings: [String] = []

    public static let defaultMongoURI = "mongodb://localhost:27017/chat"
    public static let defaultClerkAPIURL = "https://api.clerk.com"

    public static func load(environment env: [String: String], dotEnvPath: String? = ".env") throws(ConfigError) -> Config {
        let text = dotEnvPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
        return try Config(DotEnv.settings(environment: env, fileText: text))
    }

    init(_ v: [String: String]) throws(ConfigError) {
        let envName = v["NODE_ENV"] ?? "development"
        guard let environment = Environment(rawValue: envName) else {
            throw ConfigError(variable: "NODE_ENV", problem: "\(ConfigError.quote(envName)) is not one of development, production, test")
        }
        self.environment = environment
        port = try Self.integer(v, "PORT", default: 3000, range: 0...65535, what: "a port number")
        host = v["HOST"]
        if let host, !Self.isBindable(host) {
            throw ConfigError(variable: "HOST", problem: "\(ConfigError.quote(host)) is not an IP address or a network interface of this machine")
        }

        let uriText = v["MONGODB_URI"] ?? Self.defaultMongoURI
        mongoURIConfigured = v["MONGODB_URI"] != nil
        do { mongoURI = try MongoURI(uriText) } catch {
            throw ConfigError(variable: "MONGODB_URI", problem: "not a MongoDB connection string (\(error.message))")
        }

        clientURL = v["CLIENT_URL"] ?? "http://localhost:5173"
        guard Self.httpURL(clientURL) != nil else {
            throw ConfigError(variable: "CLIENT_URL", problem: "\(ConfigError.quote(clientURL)) is not an http(s) URL")
        }
        clerkPublishableKey = v["CLERK_PUBLISHABLE_KEY"]
        clerkSecretKey = v["CLERK_SECRET_KEY"]
        // Sent as a bearer header by backfill-users: a line break there would split the request.
        if let key = clerkSecretKey, !key.hasPrefix("sk_") || key.unicodeScalars.contains(where: { $0.value <= 32 || $0.value == 127 }) {
            throw ConfigError(variable: "CLERK_SECRET_KEY", problem: "not a Clerk secret key (sk_test_... or sk_live_..., no spaces)")
        }
        let apiURL = v["CLERK_API_URL"] ?? Self.defaultClerkAPIURL
        guard let parsedAPIURL = Self.httpURL(apiURL) else {
            throw ConfigError(variable: "CLERK_API_URL", problem: "\(ConfigError.quote(apiURL)) is not an http(s) URL")
        }
        clerkAPIURL = parsedAPIURL

        if let secrets = v["CLERK_WEBHOOK_SECRET"] {
            do { webhookVerifier = try WebhookVerifier(secretList: secrets) } catch {
                throw ConfigError(variable: "CLERK_WEBHOOK_SECRET", problem: "\(error)")
            }
        } else if environment == .production {
            throw ConfigError(variable: "CLERK_WEBHOOK_SECRET", problem: "required in production (the webhook route needs it)")
        } else {
            warnings.append("CLERK_WEBHOOK_SECRET is not set: POST /api/webhooks/clerk answers 503 until it is")
        }
        webhookMaxBodyBytes = try Self.integer(v, "WEBHOOK_MAX_BODY_BYTES", default: 1 << 20, range: 1024...(64 << 20), what: "a byte count")
        webhookBodyTimeoutSeconds = try Self.integer(v, "WEBHOOK_BODY_TIMEOUT_SECONDS", default: 10, range: 1...300, what: "seconds")
        webhookMaxInflightBytes = try Self.integer(v, "WEBHOOK_MAX_INFLIGHT_BYTES", default: 16 << 20,
                                                   range: webhookMaxBodyBytes...(1 << 34), what: "a byte count at least WEBHOOK_MAX_BODY_BYTES")

        tlsCertificatePath = v["TLS_CERT_FILE"]
        tlsKeyPath = v["TLS_KEY_FILE"]
        if (tlsCertificatePath == nil) != (tlsKeyPath == nil) {
            throw ConfigError(variable: tlsCertificatePath == nil ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
                              problem: "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE")
        }
        for (name, path) in [("TLS_CERT_FILE", tlsCertificatePath), ("TLS_KEY_FILE", tlsKeyPath)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigError(variable: name, problem: "cannot read \(ConfigError.quote(path))")
            }
        }
        // A readable file of the wrong kind would otherwise fail later inside libwebsockets, in its words.
        for (name, path, marker) in [("TLS_CERT_FILE", tlsCertificatePath, "CERTIFICATE-----"), ("TLS_KEY_FILE", tlsKeyPath, "PRIVATE KEY-----")] {
            if let path, !Self.isPEM(path, marker: marker) {
                throw ConfigError(variable: name, problem: "\(ConfigError.quote(path)) holds no PEM \(marker.dropLast(5).lowercased())")
            }
        }
        databaseWorkers = try Self.integer(v, "DB_WORKERS", default: 4, range: 1...64, what: "a thread count")
        databaseQueueLimit = try Self.integer(v, "DB_QUEUE_LIMIT", default: 10_000, range: 1...1_000_000, what: "a job count")
        shutdownGraceSeconds = try Self.integer(v, "SHUTDOWN_GRACE_SECONDS", default: 10, range: 0...300, what: "seconds")
        let level = v["LOG_LEVEL"] ?? (environment == .production ? "info" : "info")
        guard let logLevel = Logger.Level(rawValue: level.lowercased()) else {
            throw ConfigError(variable: "LOG_LEVEL", problem: "\(ConfigError.quote(level)) is not one of trace, debug, info, notice, warning, error, critical")
        }
        self.logLevel = logLevel
        channel = try ChannelSettings(v, environment: environment, clientURL: clientURL, warnings: &warnings)

        webRoot = v["WEB_ROOT"]
        if let webRoot, !FileManager.default.isReadableFile(atPath: webRoot + "/web/index.html") {
            throw ConfigError(variable: "WEB_ROOT", problem: "'\(webRoot)' has no readable web/index.html")
        }
        devSigningKey = try Self.devSigningKey(v, environment: environment, keySource: channel.keySource)
    }

    /// The private key of `DEV_KEYS_DIR` (default `.dev-keys`) when its public key is the one the
    /// channel trusts (`make run` sets CLERK_JWT_KEY to it) and no Clerk instance is configured.
    static func devSigningKey(_ v: [String: String], environment: Environment,
                              keySource: ChannelSettings.KeySource) throws(ConfigError) -> String? {
        let explicit = v["DEV_KEYS_DIR"]
        guard environment != .production else {
            if explicit != nil { throw ConfigError(variable: "DEV_KEYS_DIR", problem: "development keys are not used in production") }
            return nil
        }
        let directory = explicit ?? ".dev-keys"
        let keys = try? DevelopmentKeys.load(from: URL(fileURLWithPath: directory))
        // A directory named on purpose that holds no key pair is a mistake whatever else is configured.
        if keys == nil, explicit != nil { throw ConfigError(variable: "DEV_KEYS_DIR", problem: "no development key pair in \(ConfigError.quote(directory))") }
        guard v["CLERK_PUBLISHABLE_KEY"] == nil, v["CLERK_JWKS_URL"] == nil, case .pem(let trusted) = keySource, let keys else { return nil }
        guard let mine = try? keys.publicKey().jwkComponents(), let theirs = try? trusted.jwkComponents(), mine == theirs else {
            return nil   // CLERK_JWT_KEY is another key (a real Clerk instance's): no minting here
        }
        return keys.privateKeyPEM
    }

    static func integer(_ v: [String: String], _ name: String, default value: Int, range: ClosedRange<Int>,
                        what: String) throws(ConfigError) -> Int {
        guard let text = v[name] else { return value }
        guard let number = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
            throw ConfigError(variable: name, problem: "\(ConfigError.quote(text)) is not \(what) (\(range.lowerBound)-\(range.upperBound))")
        }
        return number
    }

    /// An http(s) URL with a host.
    static func httpURL(_ text: String) -> URL? {
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https",
              let host = url.host, !host.isEmpty else { return nil }
        return url
    }

    /// What libwebsockets can bind: an IPv4 or IPv6 address, or the name of a local interface.
    static func isBindable(_ host: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 { return true }
        return host.utf8.count < Int(IF_NAMESIZE) && if_nametoindex(host) != 0
    }

    /// The file's first 64 KiB name a PEM block ending in `marker` (certificates and keys are small).
    static func isPEM(_ path: String, marker: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        guard let head = try? handle.read(upToCount: 64 * 1024) else { return false }
        return String(decoding: head, as: UTF8.self).contains("-----BEGIN ") && String(decoding: head, as: UTF8.self).contains(marker)
    }
}
