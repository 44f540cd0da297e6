@testable import ChatServer
import ClerkAuth
import Foundation
import Testing
import WebSocketServer

/// The web app's file table and policy, and when the development sign-in route exists
/// (tests/test_web.py and tests/test_browser.py check the same through HTTP and a browser).
@Suite struct WebAppTests {
    func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("webapp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    func devKeys() throws -> (URL, DevelopmentKeys) {
        let dir = try temporaryDirectory()
        return (dir, try DevelopmentKeys.loadOrCreate(in: dir))
    }

    @Test func theDevRouteNeedsTheTrustedKeyToBeTheLocalPair() throws {
        let (dir, keys) = try devKeys()
        let base = ["CLERK_JWT_KEY": keys.publicKeyPEM, "DEV_KEYS_DIR": dir.path]
        #expect(try Config.load(environment: base, dotEnvPath: nil).devSigningKey == keys.privateKeyPEM)
        #expect(try Config.load(environment: base.merging(["NODE_ENV": "test"]) { $1 }, dotEnvPath: nil).devSigningKey != nil)

        let other = try DevelopmentKeys.generate().publicKeyPEM   // a real instance's key
        #expect(try Config.load(environment: base.merging(["CLERK_JWT_KEY": other]) { $1 }, dotEnvPath: nil).devSigningKey == nil)
        let publishable = "pk_test_" + Data("example.clerk.accounts.dev$".utf8).base64EncodedString()
        #expect(try Config.load(environment: base.merging(["CLERK_PUBLISHABLE_KEY": publishable]) { $1 }, dotEnvPath: nil).devSigningKey == nil)
        #expect(try Config.load(environment: ["DEV_KEYS_DIR": dir.path], dotEnvPath: nil).devSigningKey == nil)   // no key trusted
    }

    @Test func devKeySettingsThatCannotWorkStopStartUp() throws {
        let (dir, keys) = try devKeys()
        #expect { try Config.load(environment: ["NODE_ENV": "production", "CLERK_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                                                "CLERK_JWT_KEY": keys.publicKeyPEM, "DEV_KEYS_DIR": dir.path], dotEnvPath: nil) }
            throws: { ($0 as? ConfigError)?.variable == "DEV_KEYS_DIR" }
        #expect { try Config.load(environment: ["CLERK_JWT_KEY": keys.publicKeyPEM, "DEV_KEYS_DIR": dir.path + "/missing"], dotEnvPath: nil) }
            throws: { ($0 as? ConfigError)?.variable == "DEV_KEYS_DIR" }
        #expect { try Config.load(environment: ["WEB_ROOT": dir.path], dotEnvPath: nil) }
            throws: { ($0 as? ConfigError)?.variable == "WEB_ROOT" }
    }

    @Test func thePageNamesItsFilesByVersionAndCarriesItsSettings() throws {
        let root = try temporaryDirectory()
        let web = root.appendingPathComponent("web")
        try FileManager.default.createDirectory(at: web.appendingPathComponent("img"), withIntermediateDirectories: true)
        try #"<meta name="chat-config" content=""><link href="/app.css"><script src="/app.js"></script><a href="/other">"#
            .write(to: web.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
        try "body{}".write(to: web.appendingPathComponent("app.css"), atomically: true, encoding: .utf8)
        try "x".write(to: web.appendingPathComponent("app.js"), atomically: true, encoding: .utf8)
        try "<svg/>".write(to: web.appendingPathComponent("img/logo.svg"), atomically: true, encoding: .utf8)
        try "secret".write(to: web.appendingPathComponent(".hidden"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(at: web.appendingPathComponent("link.js"), withDestinationURL: root.appendingPathComponent("web/app.js"))

        let app = try WebApp(root: root, signIn: .development)
        #expect(Set(app.assets.keys) == ["/", "/index.html", "/app.css", "/app.js", "/img/logo.svg"])
        let html = String(decoding: app.assets["/"]!.body, as: UTF8.self)
        #expect(html.contains(#"href="/app.css?v=\#(app.assets["/app.css"]!.version)""#))
        #expect(html.contains(#"src="/app.js?v=\#(app.assets["/app.js"]!.version)""#))
        #expect(html.contains(#"href="/other""#))
        #expect(html.contains(#"content="{&quot;signIn&quot;:&quot;development&quot;,&quot;webSocketPath&quot;:&quot;/ws&quot;}""#))
        #expect(app.assets["/img/logo.svg"]!.contentType == "image/svg+xml")
    }

    @Test func inDevelopmentEditsAreServedWithoutARestart() throws {
        let root = try temporaryDirectory()
        let web = root.appendingPathComponent("web")
        try FileManager.default.createDirectory(at: web, withIntermediateDirectories: true)
        try #"<link href="/app.css">"#.write(to: web.appendingPathComponent("index.html"), atomically: true, encoding: .utf8)
        try "a{}".write(to: web.appendingPathComponent("app.css"), atomically: true, encoding: .utf8)
        let live = try WebApp(root: root, signIn: .development, reloads: true)
        let fixed = try WebApp(root: root, signIn: .development, reloads: false)
        let old = live.assets["/app.css"]!.version
        try "b{}".write(to: web.appendingPathComponent("app.css"), atomically: true, encoding: .utf8)
        try "x".write(to: web.appendingPathComponent("new.js"), atomically: true, encoding: .utf8)
        let head = HTTPRequestHead(method: .get, path: "/app.css", query: nil) { _ in nil }
        _ = live.action(head)
        _ = fixed.action(head)
        #expect(live.assets["/app.css"]!.body == Array("b{}".utf8) && live.assets["/new.js"] != nil)
        #expect(String(decoding: live.assets["/"]!.body, as: UTF8.self).contains("?v=\(live.assets["/app.css"]!.version)"))
        #expect(live.assets["/app.css"]!.version != old)
        #expect(fixed.assets["/app.css"]!.body == Array("a{}".utf8) && fixed.assets["/new.js"] == nil)
    }

    @Test func policyAllowsClerkOnlyInClerkMode() throws {
        let root = try temporaryDirectory()
        try FileManager.default.createDirectory(at: root.appendingPathComponent("web"), withIntermediateDirectories: true)
        try "<p>".write(to: root.appendingPathComponent("web/index.html"), atomically: true, encoding: .utf8)
        let dev = try WebApp(root: root, signIn: .development).contentSecurityPolicy(host: "localhost:3000")
        #expect(dev.contains("script-src 'self';") && !dev.contains("clerk") && !dev.contains("unsafe"))
        #expect(dev.contains("connect-src 'self' ws://localhost:3000 wss://localhost:3000;"))
        let clerk = try WebApp(root: root, signIn: .clerk(publishableKey: "pk", frontendAPI: "x.clerk.accounts.dev"))
            .contentSecurityPolicy(host: "chat.example")
        #expect(clerk.contains("script-src 'self' https://x.clerk.accounts.dev https://challenges.cloudflare.com;"))
        #expect(!clerk.contains("script-src 'self' 'unsafe"))
        // A Host header that could inject directives is not echoed.
        let hostile = try WebApp(root: root, signIn: .development).contentSecurityPolicy(host: "evil.example; script-src *")
        #expect(!hostile.contains("evil") && hostile.contains("connect-src 'self';"))
    }

    @Test func devSignInAnswersOnlyAtNamesNoOtherSiteOwns() {
        for host in ["localhost:3000", "LOCALHOST", "127.0.0.1:3000", "192.168.1.20", "[::1]:3000"] {
            #expect(DevTokenRoute.isLocalOrAddress(host: host), "\(host)")
        }
        for host in ["evil.example:3000", "localhost.evil.example", "127.0.0.1.nip.io", "1.2.3", "", "999.1.1.1"] {
            #expect(!DevTokenRoute.isLocalOrAddress(host: host), "\(host)")
        }
        #expect(!DevTokenRoute.isLocalOrAddress(host: nil))
    }

    @Test func etagsMatchLikeHTTPSays() {
        #expect(WebApp.matches(#""abc""#, etag: #""abc""#))
        #expect(WebApp.matches(#"W/"abc", "def""#, etag: #""abc""#))
        #expect(WebApp.matches("*", etag: #""abc""#))
        #expect(!WebApp.matches(#""abd""#, etag: #""abc""#))
    }
}
