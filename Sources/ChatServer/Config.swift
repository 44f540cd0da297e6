import ClerkAuth
import Foundation
import Logging
import MongoStore

/// A setting that cannot be used: start-up stops with one line naming the variable.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let variable: String
    public let problem: String
    public var description: String { "\(variable): \(problem)" }
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
    /// nil: webhooks are not configured (503 in development, fatal in production).
    public var webhookVerifier: WebhookVerifier?
    public var webhookMaxBodyBytes: Int
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

    public static func load(environment env: [String: String], dotEnvPath: String? = ".env") throws(ConfigError) -> Config {
        var values: [String: String] = [:]
        if let dotEnvPath, let text = try? String(contentsOfFile: dotEnvPath, encoding: .utf8) {
            values = DotEnv.parse(text).filter { !$0.value.isEmpty }   // `KEY=` means unset, as in .env.example
        }
        values.merge(env.filter { !$0.value.isEmpty }) { _, fromEnvironment in fromEnvironment }
        return try Config(values)
    }

    init(_ v: [String: String]) throws(ConfigError) {
        let envName = v["NODE_ENV"] ?? "development"
        guard let environment = Environment(rawValue: envName) else {
            throw ConfigError(variable: "NODE_ENV", problem: "'\(envName)' is not one of development, production, test")
        }
        self.environment = environment
        port = try Self.integer(v, "PORT", default: 3000, range: 0...65535, what: "a port number")
        host = v["HOST"]

        let uriText = v["MONGODB_URI"] ?? Self.defaultMongoURI
        mongoURIConfigured = v["MONGODB_URI"] != nil
        do { mongoURI = try MongoURI(uriText) } catch {
            throw ConfigError(variable: "MONGODB_URI", problem: "not a MongoDB connection string (\(error.message))")
        }

        clientURL = v["CLIENT_URL"] ?? "http://localhost:5173"
        guard let client = URL(string: clientURL), client.scheme == "http" || client.scheme == "https", client.host != nil else {
            throw ConfigError(variable: "CLIENT_URL", problem: "'\(clientURL)' is not an http(s) URL")
        }
        clerkPublishableKey = v["CLERK_PUBLISHABLE_KEY"]
        clerkSecretKey = v["CLERK_SECRET_KEY"]

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

        tlsCertificatePath = v["TLS_CERT_FILE"]
        tlsKeyPath = v["TLS_KEY_FILE"]
        if (tlsCertificatePath == nil) != (tlsKeyPath == nil) {
            throw ConfigError(variable: tlsCertificatePath == nil ? "TLS_CERT_FILE" : "TLS_KEY_FILE",
                              problem: "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE")
        }
        for (name, path) in [("TLS_CERT_FILE", tlsCertificatePath), ("TLS_KEY_FILE", tlsKeyPath)] {
            if let path, !FileManager.default.isReadableFile(atPath: path) {
                throw ConfigError(variable: name, problem: "cannot read '\(path)'")
            }
        }
        databaseWorkers = try Self.integer(v, "DB_WORKERS", default: 4, range: 1...64, what: "a thread count")
        databaseQueueLimit = try Self.integer(v, "DB_QUEUE_LIMIT", default: 10_000, range: 1...1_000_000, what: "a job count")
        shutdownGraceSeconds = try Self.integer(v, "SHUTDOWN_GRACE_SECONDS", default: 10, range: 0...300, what: "seconds")
        let level = v["LOG_LEVEL"] ?? (environment == .production ? "info" : "info")
        guard let logLevel = Logger.Level(rawValue: level.lowercased()) else {
            throw ConfigError(variable: "LOG_LEVEL", problem: "'\(level)' is not one of trace, debug, info, notice, warning, error, critical")
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
        guard v["CLERK_PUBLISHABLE_KEY"] == nil, v["CLERK_JWKS_URL"] == nil, case .pem(let trusted) = keySource else { return nil }
        let directory = explicit ?? ".dev-keys"
        guard let keys = try? DevelopmentKeys.load(from: URL(fileURLWithPath: directory)) else {
            if explicit != nil { throw ConfigError(variable: "DEV_KEYS_DIR", problem: "no development key pair in '\(directory)'") }
            return nil
        }
        guard let mine = try? keys.publicKey().jwkComponents(), let theirs = try? trusted.jwkComponents(), mine == theirs else {
            return nil   // CLERK_JWT_KEY is another key (a real Clerk instance's): no minting here
        }
        return keys.privateKeyPEM
    }

    static func integer(_ v: [String: String], _ name: String, default value: Int, range: ClosedRange<Int>,
                        what: String) throws(ConfigError) -> Int {
        guard let text = v[name] else { return value }
        guard let number = Int(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
            throw ConfigError(variable: name, problem: "'\(text)' is not \(what) (\(range.lowerBound)-\(range.upperBound))")
        }
        return number
    }
}
