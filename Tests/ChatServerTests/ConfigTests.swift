@testable import ChatServer
import ClerkAuth
import EnvFile
import Foundation
import Testing

@Suite struct ConfigTests {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    func load(_ env: [String: String]) throws(ConfigError) -> Config {
        try Config.load(environment: env, dotEnvPath: nil)
    }

    @Test func defaultsAreTheNodeBackends() throws {
        let config = try load([:])
        #expect(config.port == 3000)
        #expect(config.environment == .development)
        #expect(config.clientURL == "http://localhost:5173")
        #expect(config.mongoURI.databaseName == "chat")
        #expect(config.mongoURIConfigured == false)
        #expect(config.webhookVerifier == nil)
        #expect(config.warnings.contains { $0.contains("CLERK_WEBHOOK_SECRET") })
    }

    @Test func databaseNameComesFromTheURIPath() throws {
        #expect(try load(["MONGODB_URI": "mongodb://db.example:27017/prod_chat?retryWrites=true"]).mongoURI.databaseName == "prod_chat")
        #expect(try load(["MONGODB_URI": "mongodb://db.example:27017"]).mongoURI.databaseName == "test")
    }

    @Test func passwordIsMaskedForLogs() throws {
        let config = try load(["MONGODB_URI": "mongodb://app:s3cret@db.example:27017/chat"])
        #expect(config.mongoURI.masked == "mongodb://app:****@db.example:27017/chat")
        #expect(!config.mongoURI.masked.contains("s3cret"))
    }

    @Test(arguments: [
        (["PORT": "abc"], "PORT"),
        (["PORT": "70000"], "PORT"),
        (["MONGODB_URI": "postgres://nope"], "MONGODB_URI"),
        (["MONGODB_URI": "mongodb://"], "MONGODB_URI"),
        (["NODE_ENV": "staging"], "NODE_ENV"),
        (["CLERK_WEBHOOK_SECRET": "whsec_***not base64***"], "CLERK_WEBHOOK_SECRET"),
        (["CLERK_WEBHOOK_SECRET": "whsec_"], "CLERK_WEBHOOK_SECRET"),
        (["CLIENT_URL": "localhost"], "CLIENT_URL"),
        (["TLS_CERT_FILE": "/etc/hostname"], "TLS_KEY_FILE"),
        (["TLS_CERT_FILE": "/missing.pem", "TLS_KEY_FILE": "/missing.key"], "TLS_CERT_FILE"),
        (["DB_WORKERS": "0"], "DB_WORKERS"),
        (["LOG_LEVEL": "loud"], "LOG_LEVEL"),
        (["CLERK_JWT_KEY": "not a key"], "CLERK_JWT_KEY"),
        (["CLERK_PUBLISHABLE_KEY": "sk_test_abc"], "CLERK_PUBLISHABLE_KEY"),
        (["WS_PING_INTERVAL_SECONDS": "30", "WS_PING_TIMEOUT_SECONDS": "20"], "WS_PING_TIMEOUT_SECONDS"),
        (["CLERK_PUBLISHABLE_KEY": "pk_test_YSBiJA=="], "CLERK_PUBLISHABLE_KEY"),   // the host "a b"
        (["HOST": "example.com"], "HOST"),
        (["CLERK_SECRET_KEY": "sk_test_a b"], "CLERK_SECRET_KEY"),
        (["CLERK_API_URL": "api.clerk.com"], "CLERK_API_URL"),
        (["CLERK_ISSUER": "not a url"], "CLERK_ISSUER"),
        (["CLERK_JWKS_URL": "http://"], "CLERK_JWKS_URL"),
        (["ALLOWED_ORIGINS": "https://ok.example *"], "ALLOWED_ORIGINS"),
        (["CLERK_AUTHORIZED_PARTIES": "/relative"], "CLERK_AUTHORIZED_PARTIES"),
        (["MONGODB_URI": "mongodb://a b/chat"], "MONGODB_URI"),
    ])
    func badValuesNameTheVariable(env: [String: String], variable: String) {
        #expect { try load(env) } throws: { ($0 as? ConfigError)?.variable == variable }
    }

    @Test func goodValuesOfTheNewChecksPass() throws {
        let config = try load(["HOST": "::1", "CLERK_SECRET_KEY": "sk_live_abc", "CLERK_API_URL": "http://127.0.0.1:9000",
                               "CLERK_ISSUER": "https://app.clerk.accounts.dev", "ALLOWED_ORIGINS": "http://127.0.0.1, capacitor://localhost",
                               "CLERK_AUTHORIZED_PARTIES": "https://app.example:8443/"])
        #expect(config.host == "::1" && config.clerkAPIURL.absoluteString == "http://127.0.0.1:9000")
        #expect(config.channel.allowedOrigins.contains("capacitor://localhost"))
        #expect(try load(["HOST": "lo"]).host == "lo")   // an interface name, as libwebsockets takes it
    }

    @Test func anErrorIsOneLineWhateverTheValue() {
        #expect { try load(["LOG_LEVEL": "a\nb\r\u{2028}c"]) } throws: { error in
            let text = "\(error)"
            return !text.contains("\n") && !text.contains("\r") && !text.contains("\u{2028}") && text.contains("a\\nb")
        }
    }

    @Test func productionRequiresTheSecretsItsRoutesNeed() throws {
        let key = try DevelopmentKeys.generate().publicKeyPEM
        #expect { try load(["NODE_ENV": "production", "CLERK_JWT_KEY": key]) } throws: { ($0 as? ConfigError)?.variable == "CLERK_WEBHOOK_SECRET" }
        #expect { try load(["NODE_ENV": "production", "CLERK_WEBHOOK_SECRET": secret]) } throws: { ($0 as? ConfigError)?.variable == "CLERK_JWT_KEY" }
        #expect(throws: Never.self) { try load(["NODE_ENV": "production", "CLERK_WEBHOOK_SECRET": secret, "CLERK_JWT_KEY": key]) }
        // A publishable key names the instance's JWKS instead.
        let config = try load(["NODE_ENV": "production", "CLERK_WEBHOOK_SECRET": secret,
                               "CLERK_PUBLISHABLE_KEY": "pk_test_" + Data("example.clerk.accounts.dev$".utf8).base64EncodedString()])
        guard case .jwks(let url) = config.channel.keySource else { Issue.record("expected a JWKS source"); return }
        #expect(url.absoluteString == "https://example.clerk.accounts.dev/.well-known/jwks.json")
    }

    @Test func jwtKeyWithLiteralBackslashNIsAccepted() throws {
        let pem = try DevelopmentKeys.generate().publicKeyPEM.replacingOccurrences(of: "\n", with: "\\n")
        let config = try load(["CLERK_JWT_KEY": pem])
        guard case .pem = config.channel.keySource else { Issue.record("expected a PEM key"); return }
    }

    @Test func secretErrorsNeverEchoTheSecret() {
        let bad = "whsec_c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0!!"
        #expect { try load(["CLERK_WEBHOOK_SECRET": bad]) } throws: { !"\($0)".contains("c2VjcmV0LXRoYXQtaXMtdG9vLXNob3J0") }
    }

    @Test func webhookBodyBoundsHaveDefaultsAndRefuseBadValues() throws {
        let config = try load([:])
        #expect(config.webhookBodyTimeoutSeconds == 10 && config.webhookMaxInflightBytes == 16 << 20)
        #expect(try load(["WEBHOOK_BODY_TIMEOUT_SECONDS": "3", "WEBHOOK_MAX_INFLIGHT_BYTES": "2097152"]).webhookMaxInflightBytes == 2 << 20)
        for (name, value) in [("WEBHOOK_BODY_TIMEOUT_SECONDS", "0"), ("WEBHOOK_BODY_TIMEOUT_SECONDS", "ten"),
                              ("WEBHOOK_MAX_INFLIGHT_BYTES", "-1"), ("WEBHOOK_MAX_INFLIGHT_BYTES", "1048575")] {
            #expect { try load([name: value]) } throws: { ($0 as? ConfigError)?.variable == name }
        }
        // The in-flight cap must admit at least one body of the largest size accepted.
        #expect { try load(["WEBHOOK_MAX_BODY_BYTES": "4194304", "WEBHOOK_MAX_INFLIGHT_BYTES": "2097152"]) } throws: {
            ($0 as? ConfigError)?.variable == "WEBHOOK_MAX_INFLIGHT_BYTES"
        }
    }

    @Test func theExampleFileLoadsAsIs() throws {
        let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".env.example").path
        let config = try Config.load(environment: [:], dotEnvPath: example)
        #expect(config.port == 3000 && config.mongoURIConfigured == false && config.webhookVerifier == nil)
    }

    @Test func environmentWinsOverTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("env-\(UUID().uuidString)").path
        try "PORT=4000\nCLIENT_URL=http://file.example\n".write(toFile: path, atomically: true, encoding: .utf8)
        let config = try Config.load(environment: ["PORT": "5000"], dotEnvPath: path)
        #expect(config.port == 5000 && config.clientURL == "http://file.example")
    }

    @Test func dotEnvIsReadAndTheEnvironmentWins() {
        let parsed = DotEnv.parse("""
        # comment
        export PORT=4000
        MONGODB_URI="mongodb://localhost:27017/fromfile"
        CLIENT_URL=http://app.example # trailing comment
        CLERK_JWT_KEY="-----BEGIN PUBLIC KEY-----\\nABC\\n-----END PUBLIC KEY-----"
        QUOTED='single # kept'
        """)
        #expect(parsed["PORT"] == "4000")
        #expect(parsed["MONGODB_URI"] == "mongodb://localhost:27017/fromfile")
        #expect(parsed["CLIENT_URL"] == "http://app.example")
        #expect(parsed["CLERK_JWT_KEY"] == "-----BEGIN PUBLIC KEY-----\nABC\n-----END PUBLIC KEY-----")
        #expect(parsed["QUOTED"] == "single # kept")
    }
}
