import ArgumentParser
import ChatServer
import ClerkAuth
import EnvFile
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Signs a Clerk event with the configured secret and posts it, as the Clerk dashboard's
/// "send example" does: local development without a Clerk account.
struct SendWebhook: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-webhook",
        abstract: "Sign a Clerk event (a JSON file, or one built from flags) and post it to a running server.")

    @Argument(help: "A JSON event file (e.g. Tests/Fixtures/clerk/user.created.json). Omit to build one from the flags.")
    var file: String?

    @Option(help: "Event type when building one: user.created, user.updated, user.deleted.")
    var type: String = "user.created"
    @Option(help: "Clerk user id (default: a new random one).")
    var userId: String?
    @Option var username: String?
    @Option var email: String?
    @Option var firstName: String?
    @Option var lastName: String?

    @Option(help: "Server base URL (default: http://127.0.0.1:PORT, PORT from the environment or .env, else 3000).")
    var url: String?
    @Option(help: "The svix-id (default: a new one; repeat one to test idempotency).")
    var id: String?
    @Option(help: "The .env file to read CLERK_WEBHOOK_SECRET and PORT from (the environment wins).")
    var envFile: String = ".env"
    @Option(help: "Where `make run` keeps the development webhook secret, used when CLERK_WEBHOOK_SECRET is unset.")
    var keysDir: String = ".dev-keys"

    func run() throws {
        try runTool("send-webhook") {
            let values = toolSettings(envFile: envFile)
            let secret = try signingSecret(values)
            let body: [UInt8]
            if let file {
                do { body = Array(try Data(contentsOf: URL(fileURLWithPath: file))) } catch {
                    throw ToolFailure.failed("cannot read \(file)")
                }
            } else {
                body = Array(try buildEvent())
            }
            let messageID = id ?? "msg_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
            let timestamp = Int(Date().timeIntervalSince1970)
            let signature = WebhookVerifier.sign(secret: secret, id: messageID, timestamp: timestamp, body: body)

            let base = url ?? "http://127.0.0.1:\(values["PORT"] ?? "3000")"
            guard let endpoint = URL(string: base + "/api/webhooks/clerk"), endpoint.host != nil else {
                throw ToolFailure.setting("--url: '\(base)' is not an http(s) URL")
            }
            var request = URLRequest(url: endpoint, timeoutInterval: 30)
            request.httpMethod = "POST"
            request.httpBody = Data(body)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue(messageID, forHTTPHeaderField: "svix-id")
            request.setValue(String(timestamp), forHTTPHeaderField: "svix-timestamp")
            request.setValue(signature, forHTTPHeaderField: "svix-signature")
            let (status, answer) = try HTTPCall.send(request, what: "chat-server")
            let summary = "\(status) \(answer)  (svix-id \(messageID))"
            guard (200..<300).contains(status) else {
                let hint = status == 400 ? ": is the secret the server's CLERK_WEBHOOK_SECRET?" : ""
                throw ToolFailure.failed("the server answered \(summary)\(hint)")
            }
            Console.print(summary)
        }
    }

    /// CLERK_WEBHOOK_SECRET (environment, then .env; the first of several), else the development
    /// secret `make run` created and gave the server.
    private func signingSecret(_ values: [String: String]) throws -> WebhookSecret {
        if let text = values["CLERK_WEBHOOK_SECRET"]?.split(whereSeparator: { $0 == " " || $0 == "," }).first {
            do { return try WebhookSecret(parsing: String(text)) } catch {
                throw ToolFailure.setting("CLERK_WEBHOOK_SECRET: \(error)")
            }
        }
        let path = (keysDir as NSString).appendingPathComponent(DevelopmentKeys.webhookSecretFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw ToolFailure.setting("no webhook secret: set CLERK_WEBHOOK_SECRET (environment or \(envFile)), or start the server "
                                      + "with `make run`, which creates \(path) in development")
        }
        let text = try DevelopmentKeys.loadOrCreateWebhookSecret(in: URL(fileURLWithPath: keysDir))
        return try WebhookSecret(parsing: text)
    }

    private func buildEvent() throws -> Data {
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let uid = userId ?? "user_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24)
        let data: [String: Any]
        switch type {
        case "user.deleted":
            data = ["id": uid, "object": "user", "deleted": true]
        case "user.created", "user.updated":
            let emailID = "idn_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").prefix(24)
            data = [
                "id": uid, "object": "user", "username": username as Any? ?? NSNull(),
                "first_name": firstName as Any? ?? NSNull(), "last_name": lastName as Any? ?? NSNull(),
                "image_url": "https://img.clerk.com/placeholder",
                "primary_email_address_id": email == nil ? NSNull() : emailID,
                "email_addresses": email.map { [["id": emailID, "object": "email_address", "email_address": $0]] } ?? [],
                "created_at": now, "updated_at": now,
            ]
        default:
            throw ToolFailure.setting("--type must be user.created, user.updated or user.deleted")
        }
        let event: [String: Any] = ["type": type, "object": "event", "timestamp": now, "data": data,
                                    "instance_id": "ins_local_development"]
        return try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
    }
}
