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

    @Option(help: "Server base URL.")
    var url: String = "http://127.0.0.1:\(ProcessInfo.processInfo.environment["PORT"] ?? "3000")"
    @Option(help: "The svix-id (default: a new one; repeat one to test idempotency).")
    var id: String?
    @Option(help: "The .env file to read CLERK_WEBHOOK_SECRET from (the environment wins).")
    var envFile: String = ".env"

    func run() throws {
        var values = (try? String(contentsOfFile: envFile, encoding: .utf8)).map(DotEnv.parse) ?? [:]
        values.merge(ProcessInfo.processInfo.environment) { $1 }
        guard let secretText = values["CLERK_WEBHOOK_SECRET"]?.split(whereSeparator: { $0 == " " || $0 == "," }).first else {
            throw ValidationError("CLERK_WEBHOOK_SECRET is not set (environment or \(envFile))")
        }
        let secret = try WebhookSecret(parsing: String(secretText))
        let body: [UInt8]
        if let file {
            body = Array(try Data(contentsOf: URL(fileURLWithPath: file)))
        } else {
            body = Array(try buildEvent())
        }
        let messageID = id ?? "msg_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let timestamp = Int(Date().timeIntervalSince1970)
        let signature = WebhookVerifier.sign(secret: secret, id: messageID, timestamp: timestamp, body: body)

        guard let endpoint = URL(string: url + "/api/webhooks/clerk") else { throw ValidationError("bad --url") }
        var request = URLRequest(url: endpoint)
        request.httpMethod = "POST"
        request.httpBody = Data(body)
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(messageID, forHTTPHeaderField: "svix-id")
        request.setValue(String(timestamp), forHTTPHeaderField: "svix-timestamp")
        request.setValue(signature, forHTTPHeaderField: "svix-signature")
        let (status, answer) = try HTTPCall.send(request)
        print("\(status) \(answer)  (svix-id \(messageID))")
        if !(200..<300).contains(status) { throw ExitCode(1) }
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
            throw ValidationError("--type must be user.created, user.updated or user.deleted")
        }
        let event: [String: Any] = ["type": type, "object": "event", "timestamp": now, "data": data,
                                    "instance_id": "ins_local_development"]
        return try JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])
    }
}
