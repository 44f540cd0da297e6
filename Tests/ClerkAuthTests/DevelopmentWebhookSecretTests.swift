import ClerkAuth
import Foundation
import Testing

@Suite struct DevelopmentWebhookSecretTests {
    func temporaryDirectory() -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("dev-secret-" + UUID().uuidString)
    }

    @Test func madeOnceWithAPrivateModeAndAcceptedByTheVerifier() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = try DevelopmentKeys.loadOrCreateWebhookSecret(in: dir)
        #expect(secret.hasPrefix("whsec_"))
        _ = try WebhookSecret(parsing: secret)
        let path = dir.appendingPathComponent(DevelopmentKeys.webhookSecretFile).path
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(try DevelopmentKeys.loadOrCreateWebhookSecret(in: dir) == secret)
        #expect(try DevelopmentKeys.loadOrCreateWebhookSecret(in: temporaryDirectory()) != secret)
    }

    @Test func aDamagedFileIsOneLineSayingWhatToDo() throws {
        let dir = temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try "whsec_???".write(to: dir.appendingPathComponent(DevelopmentKeys.webhookSecretFile), atomically: true, encoding: .utf8)
        do {
            _ = try DevelopmentKeys.loadOrCreateWebhookSecret(in: dir)
            Issue.record("a damaged secret was accepted")
        } catch {
            #expect("\(error)".contains("is not a webhook secret") && "\(error)".contains("delete it"))
            #expect(!"\(error)".contains("\n"))
        }
    }
}
