import ChatTesting
import Foundation
import Testing

/// Bad settings stop start-up with exit 2 and one line naming the variable: every variable of the
/// README's configuration table, each with a malformed value, through a real `chat-server` process.
@Suite struct StartupConfigurationTests {
    /// A readable file that names a PEM certificate (its body is no certificate: the key is checked first).
    static let certificateLookalike: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cert-\(UUID().uuidString).pem").path
        _ = FileManager.default.createFile(atPath: path, contents: Data("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8))
        return path
    }()

    /// (variable named in the error, environment). One or more cases per variable of the README table.
    static let malformed: [(String, [String: String])] = [
        ("MONGODB_URI", ["MONGODB_URI": "mongodb://a b"]),
        ("MONGODB_URI", ["MONGODB_URI": "http://not-mongo"]),
        // Decodes to the host "a b": crashed at a force unwrap building the JWKS URL.
        ("CLERK_PUBLISHABLE_KEY", ["CLERK_PUBLISHABLE_KEY": "pk_test_YSBiJA=="]),
        ("CLERK_PUBLISHABLE_KEY", ["CLERK_PUBLISHABLE_KEY": "pk_test_" + Data("evil.example/x?$".utf8).base64EncodedString()]),
        ("CLERK_SECRET_KEY", ["CLERK_SECRET_KEY": "sk_live_abc\r\nX-Injected: 1"]),
        ("CLERK_API_URL", ["CLERK_API_URL": "ftp://api.clerk.com"]),
        ("CLERK_WEBHOOK_SECRET", ["CLERK_WEBHOOK_SECRET": "whsec_%%%"]),
        ("PORT", ["PORT": "70000"]),
        ("PORT", ["PORT": "80\n81"]),   // a line break in the value stays inside the one line
        ("NODE_ENV", ["NODE_ENV": "staging"]),
        ("CLIENT_URL", ["CLIENT_URL": "localhost:5173"]),
        ("CLIENT_URL", ["CLIENT_URL": "http://a b"]),
        ("CLERK_JWT_KEY", ["CLERK_JWT_KEY": "-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----"]),
        ("CLERK_JWKS_URL", ["CLERK_JWKS_URL": "https://"]),
        ("CLERK_AUTHORIZED_PARTIES", ["CLERK_AUTHORIZED_PARTIES": "https://app.example,not-an-origin"]),
        ("CLERK_ISSUER", ["CLERK_ISSUER": "clerk.example"]),
        ("ALLOWED_ORIGINS", ["ALLOWED_ORIGINS": "*"]),
        ("HOST", ["HOST": "no-such-interface-0"]),
        ("TLS_CERT_FILE", ["TLS_CERT_FILE": "/etc/hostname", "TLS_KEY_FILE": "/etc/hostname"]),
        ("TLS_CERT_FILE", ["TLS_CERT_FILE": "/nonexistent.pem", "TLS_KEY_FILE": "/nonexistent.key"]),
        ("TLS_KEY_FILE", ["TLS_CERT_FILE": certificateLookalike, "TLS_KEY_FILE": "/etc/hostname"]),
        ("TLS_KEY_FILE", ["TLS_CERT_FILE": certificateLookalike]),
        ("WEB_ROOT", ["WEB_ROOT": "/nonexistent"]),
        ("DEV_KEYS_DIR", ["DEV_KEYS_DIR": "/nonexistent"]),
        ("WEBHOOK_MAX_BODY_BYTES", ["WEBHOOK_MAX_BODY_BYTES": "1e6"]),
        ("WEBHOOK_BODY_TIMEOUT_SECONDS", ["WEBHOOK_BODY_TIMEOUT_SECONDS": "0"]),
        ("WEBHOOK_MAX_INFLIGHT_BYTES", ["WEBHOOK_MAX_INFLIGHT_BYTES": "1024"]),
        ("DB_WORKERS", ["DB_WORKERS": "0"]),
        ("DB_QUEUE_LIMIT", ["DB_QUEUE_LIMIT": "-1"]),
        ("SHUTDOWN_GRACE_SECONDS", ["SHUTDOWN_GRACE_SECONDS": "ten"]),
        ("LOG_LEVEL", ["LOG_LEVEL": "loud"]),
        ("WS_AUTH_TIMEOUT_SECONDS", ["WS_AUTH_TIMEOUT_SECONDS": "0"]),
        ("WS_PING_INTERVAL_SECONDS", ["WS_PING_INTERVAL_SECONDS": "99999999999999999999999"]),
        ("WS_PING_TIMEOUT_SECONDS", ["WS_PING_TIMEOUT_SECONDS": "1"]),
        ("WS_MAX_MESSAGE_BYTES", ["WS_MAX_MESSAGE_BYTES": "12"]),
        ("WS_MAX_OUTBOUND_BYTES", ["WS_MAX_OUTBOUND_BYTES": "1 MB"]),
        ("WS_RATE_LIMIT", ["WS_RATE_LIMIT": "0"]),
        ("WS_RATE_BURST", ["WS_RATE_BURST": "-5"]),
        ("CHAT_MAX_MESSAGE_BYTES", ["CHAT_MAX_MESSAGE_BYTES": "70000"]),
        ("CHAT_MAX_BATCH", ["CHAT_MAX_BATCH": "0x10"]),
        ("PRESENCE_HEARTBEAT_SECONDS", ["PRESENCE_HEARTBEAT_SECONDS": "20"]),
        ("PRESENCE_INSTANCE_TIMEOUT_SECONDS", ["PRESENCE_INSTANCE_TIMEOUT_SECONDS": "2"]),
    ]

    @Test(arguments: malformed)
    func malformedSettingExitsTwoWithOneLineNamingIt(variable: String, environment: [String: String]) throws {
        // No database is reached: configuration is read first.
        let server = try ServerProcess(environment: environment, mongoURI: "mongodb://127.0.0.1:9/config_test", waitForBanner: false)
        let code = server.waitForExit(timeout: 30)
        #expect(code == 2, "exit \(String(describing: code)); output: \(server.output)")
        let errors = server.errorOutput
        #expect(errors.count == 1, "\(errors)")
        #expect(errors.first?.hasPrefix("configuration error: \(variable): ") == true, "\(errors)")
        #expect(server.output.count == errors.count, "nothing on stdout: \(server.output)")
        if variable == "CLERK_SECRET_KEY" { #expect(!(errors.first ?? "").contains("sk_live_abc")) }
    }

    /// The table above covers the README's configuration table, so a new setting needs a malformed case.
    @Test func everyDocumentedVariableHasAMalformedCase() throws {
        let readme = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        guard let start = readme.range(of: "\n## Configuration\n") else { Issue.record("no Configuration section"); return }
        let section = readme[start.upperBound...]
        let body = section.range(of: "\n## ").map { section[..<$0.lowerBound] } ?? section
        var documented = Set<String>()
        for line in body.split(separator: "\n") where line.hasPrefix("| `") {
            let firstCell = line.dropFirst(2).prefix { $0 != "|" }
            for name in firstCell.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter({ $0.offset % 2 == 1 }).map({ String($0.element) })
            where name.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) {
                documented.insert(name)
            }
        }
        #expect(documented.count > 20)
        let tested = Set(Self.malformed.map(\.0))
        #expect(documented.subtracting(tested).sorted() == [], "documented but never fed a malformed value")
        #expect(tested.subtracting(documented).sorted() == [], "tested but not in the README table")
    }

    @Test func productionWithoutWebhookSecretRefusesToStart() throws {
        let server = try ServerProcess(environment: ["NODE_ENV": "production", "CLERK_WEBHOOK_SECRET": ""], waitForBanner: false)
        #expect(server.waitForExit(timeout: 20) == 2)
        #expect(server.errorOutput.count == 1 && server.errorOutput.first?.contains("CLERK_WEBHOOK_SECRET") == true)
    }

    @Test func developmentWithoutWebhookSecretAnswers503SayingWhy() throws {
        let server = try ServerProcess(environment: ["NODE_ENV": "development", "CLERK_WEBHOOK_SECRET": ""])
        let response = try server.http.post("/api/webhooks/clerk", body: Array("{}".utf8))
        #expect(response.status == 503)
        #expect(response.text.contains("CLERK_WEBHOOK_SECRET"))
    }

    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
}
