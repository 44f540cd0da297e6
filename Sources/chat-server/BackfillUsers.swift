import ArgumentParser
import ChatDomain
import ChatServer
import EnvFile
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import MongoStore

/// Webhooks only cover changes from now on: this copies the users that already exist in Clerk
/// (Backend API `GET /v1/users`, paginated) into the `users` collection, with the same ordering rule
/// as the webhooks, so a newer webhook is never overwritten by the backfill.
struct BackfillUsers: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backfill-users",
        abstract: "Copy existing Clerk users into MongoDB (bearer CLERK_SECRET_KEY).")

    @Option(help: "Clerk Backend API base URL (default: CLERK_API_URL, else https://api.clerk.com).")
    var apiURL: String?
    @Option(help: "Users per page (Clerk allows up to 500).")
    var pageSize: Int = 100
    @Option(help: "The .env file to read (the environment wins).")
    var envFile: String = ".env"

    func run() throws {
        try runTool("backfill-users") { try backfill() }
    }

    private func backfill() throws {
        let values = toolSettings(envFile: envFile)
        guard let secret = values["CLERK_SECRET_KEY"] else {
            throw ToolFailure.setting("CLERK_SECRET_KEY is not set (environment or \(envFile)): the Backend API key from Clerk's dashboard")
        }
        let apiURL = apiURL ?? values["CLERK_API_URL"] ?? "https://api.clerk.com"
        let uri: MongoURI
        do { uri = try MongoURI(values["MONGODB_URI"] ?? Config.defaultMongoURI) } catch {
            throw ToolFailure.setting("MONGODB_URI: not a MongoDB connection string (\(error.message))")
        }
        let database = try Database(uri: uri, workers: 1, queueLimit: 10, logger: Logger(label: "backfill"))
        do { try database.withConnection { try Schema.ensureIndexes(on: $0) } } catch let error as DatabaseError where error.isUnavailable {
            throw ToolFailure.failed("cannot reach MongoDB at \(uri.masked) (\(error)): is it running, or is MONGODB_URI wrong?")
        }
        var offset = 0
        var counts: [WebhookOutcome: Int] = [:]
        while true {
            guard var components = URLComponents(string: apiURL + "/v1/users") else { throw ToolFailure.setting("--api-url: '\(apiURL)' is not a URL") }
            components.queryItems = [URLQueryItem(name: "limit", value: String(pageSize)), URLQueryItem(name: "offset", value: String(offset)),
                                     URLQueryItem(name: "order_by", value: "created_at")]
            guard let url = components.url else { throw ToolFailure.setting("--api-url: '\(apiURL)' is not a URL") }
            var request = URLRequest(url: url)
            request.setValue("Bearer \(secret)", forHTTPHeaderField: "Authorization")
            let (status, body) = try HTTPCall.send(request, what: "the Clerk Backend API")
            guard status == 200 else { throw ToolFailure.failed("Clerk answered \(status) for \(url.path)\(status == 401 ? ": is CLERK_SECRET_KEY right?" : "")") }
            guard let page = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [Any] else {
                throw ToolFailure.failed("Clerk's answer is not a list of users")
            }
            for user in page {
                let envelope = try JSONSerialization.data(withJSONObject: ["type": "user.updated", "object": "event", "data": user])
                guard case .userUpserted(_, let profile, let updatedAt) = try ClerkEvent.decode(Array(envelope)) else { continue }
                let event = ClerkEvent.userUpserted(type: "user.backfill", profile: profile, clerkUpdatedAt: updatedAt)
                let outcome = try database.withConnection {
                    try UserStore.apply(event, deliveryID: "backfill:\(profile.clerkID):\(updatedAt)", now: Date(), on: $0)
                }
                counts[outcome, default: 0] += 1
            }
            if page.count < pageSize { break }
            offset += page.count
        }
        Console.print("backfill done: \(counts[.applied] ?? 0) applied, \(counts[.superseded] ?? 0) already newer, \(counts[.duplicate] ?? 0) unchanged")
    }
}
