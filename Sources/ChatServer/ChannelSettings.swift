import ClerkAuth
import Foundation

/// Settings of the WebSocket channel: how session tokens are verified, who may connect, limits.
public struct ChannelSettings {
    public enum KeySource {
        /// `CLERK_JWT_KEY`: networkless verification with the instance's PEM public key.
        case pem(RSAPublicKey)
        /// A JWKS URL (`CLERK_JWKS_URL`, or derived from `CLERK_PUBLISHABLE_KEY`), fetched and cached.
        case jwks(URL)
        /// Nothing configured (development only): every token is refused, saying why.
        case none
    }

    public var keySource: KeySource
    public var authorizedParties: [String]
    public var issuer: String?
    /// Origins whose browser pages may open the channel; requests without an Origin (non-browsers) pass.
    public var allowedOrigins: Set<String>
    public var authTimeoutSeconds: Int
    public var pingIntervalSeconds: Int
    public var pingTimeoutSeconds: Int
    public var maxMessageBytes: Int
    public var maxOutboundBytes: Int
    public var rateLimitPerSecond: Int
    public var rateLimitBurst: Int
    public var instanceTimeoutSeconds: Int
    public var heartbeatSeconds: Int
    /// Largest message text (UTF-8 bytes).
    public var maxTextBytes: Int
    /// Largest group of sends stored in one transaction.
    public var maxBatch: Int

    init(_ v: [String: String], environment: Config.Environment, clientURL: String, warnings: inout [String]) throws(ConfigError) {
        if let pem = v["CLERK_JWT_KEY"] {
            do { keySource = .pem(try RSAPublicKey(pem: pem)) } catch {
                throw ConfigError(variable: "CLERK_JWT_KEY", problem: "not a PEM RSA public key")
            }
        } else if let url = v["CLERK_JWKS_URL"] {
            guard let parsed = Config.httpURL(url) else {
                throw ConfigError(variable: "CLERK_JWKS_URL", problem: "\(ConfigError.quote(url)) is not an http(s) URL")
            }
            keySource = .jwks(parsed)
        } else if let publishable = v["CLERK_PUBLISHABLE_KEY"] {
            guard let host = Self.frontendAPIHost(publishableKey: publishable),
                  let url = URL(string: "https://\(host)/.well-known/jwks.json") else {
                throw ConfigError(variable: "CLERK_PUBLISHABLE_KEY", problem: "not a Clerk publishable key (pk_test_... or pk_live_...)")
            }
            keySource = .jwks(url)
        } else if environment == .production {
            throw ConfigError(variable: "CLERK_JWT_KEY", problem: "required in production (or CLERK_PUBLISHABLE_KEY / CLERK_JWKS_URL): the WebSocket channel verifies Clerk session tokens")
        } else {
            keySource = .none
            warnings.append("CLERK_JWT_KEY is not set (nor CLERK_PUBLISHABLE_KEY, CLERK_JWKS_URL): WebSocket authentication refuses every token; `make run` sets a local development key")
        }
        let client = clientURL.hasSuffix("/") ? String(clientURL.dropLast()) : clientURL
        let extra = try Self.origins(v, "CLERK_AUTHORIZED_PARTIES")
        authorizedParties = [client] + extra
        issuer = v["CLERK_ISSUER"]
        if let issuer, Config.httpURL(issuer) == nil {
            throw ConfigError(variable: "CLERK_ISSUER", problem: "\(ConfigError.quote(issuer)) is not an http(s) URL")
        }
        allowedOrigins = Set([client] + extra + (try Self.origins(v, "ALLOWED_ORIGINS")))
        authTimeoutSeconds = try Config.integer(v, "WS_AUTH_TIMEOUT_SECONDS", default: 5, range: 1...60, what: "seconds")
        pingIntervalSeconds = try Config.integer(v, "WS_PING_INTERVAL_SECONDS", default: 10, range: 1...600, what: "seconds")
        pingTimeoutSeconds = try Config.integer(v, "WS_PING_TIMEOUT_SECONDS", default: 20, range: 2...900, what: "seconds")
        guard pingTimeoutSeconds > pingIntervalSeconds else {
            throw ConfigError(variable: "WS_PING_TIMEOUT_SECONDS", problem: "must be larger than WS_PING_INTERVAL_SECONDS")
        }
        maxMessageBytes = try Config.integer(v, "WS_MAX_MESSAGE_BYTES", default: 64 * 1024, range: 256...(16 << 20), what: "a byte count")
        maxOutboundBytes = try Config.integer(v, "WS_MAX_OUTBOUND_BYTES", default: 1 << 20, range: 4096...(256 << 20), what: "a byte count")
        rateLimitPerSecond = try Config.integer(v, "WS_RATE_LIMIT", default: 50, range: 1...100_000, what: "messages per second")
        rateLimitBurst = try Config.integer(v, "WS_RATE_BURST", default: 100, range: 1...100_000, what: "messages")
        instanceTimeoutSeconds = try Config.integer(v, "PRESENCE_INSTANCE_TIMEOUT_SECONDS", default: 30, range: 3...3600, what: "seconds")
        heartbeatSeconds = try Config.integer(v, "PRESENCE_HEARTBEAT_SECONDS", default: 5, range: 1...600, what: "seconds")
        maxTextBytes = try Config.integer(v, "CHAT_MAX_MESSAGE_BYTES", default: 8000, range: 1...(1 << 20), what: "a byte count")
        maxBatch = try Config.integer(v, "CHAT_MAX_BATCH", default: 256, range: 1...10_000, what: "a message count")
        guard maxTextBytes + 1024 <= maxMessageBytes else {
            throw ConfigError(variable: "CHAT_MAX_MESSAGE_BYTES", problem: "must leave 1 KiB for the frame under WS_MAX_MESSAGE_BYTES")
        }
        guard heartbeatSeconds * 2 <= instanceTimeoutSeconds else {
            throw ConfigError(variable: "PRESENCE_HEARTBEAT_SECONDS", problem: "must be at most half of PRESENCE_INSTANCE_TIMEOUT_SECONDS")
        }
    }

    /// `pk_test_<base64("host$")>` -> `host`.
    static func frontendAPIHost(publishableKey: String) -> String? {
        let parts = publishableKey.split(separator: "_", maxSplits: 2)
        guard parts.count == 3, parts[0] == "pk", parts[1] == "test" || parts[1] == "live" else { return nil }
        var encoded = String(parts[2])
        while encoded.count % 4 != 0 { encoded += "=" }
        guard let data = Data(base64Encoded: encoded), let text = String(data: data, encoding: .utf8), text.hasSuffix("$") else { return nil }
        let host = String(text.dropLast())
        // A DNS name (and optional port): anything else could not form the JWKS URL.
        let allowed = host.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || ".-:".unicodeScalars.contains($0) }
        return host.isEmpty || !allowed ? nil : host
    }

    /// A comma or space separated list of origins (`scheme://host[:port]`), each named in the error.
    static func origins(_ v: [String: String], _ name: String) throws(ConfigError) -> [String] {
        let entries = list(v[name])
        for entry in entries {
            guard let url = URL(string: entry), let scheme = url.scheme, !scheme.isEmpty, let host = url.host, !host.isEmpty else {
                throw ConfigError(variable: name, problem: "\(ConfigError.quote(entry)) is not an origin (scheme://host[:port])")
            }
        }
        return entries
    }

    static func list(_ text: String?) -> [String] {
        (text ?? "").split(whereSeparator: { $0 == "," || $0 == " " }).map { s in
            s.hasSuffix("/") ? String(s.dropLast()) : String(s)
        }
    }
}
