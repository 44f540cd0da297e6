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
        var values = (try? String(contentsOfFile: envFile, encoding: .utf8)).map(DotEnv.parse) ?? [:]
        values.merge(ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty }) { $1 }
        guard let secret = values["CLERK_SECRET_KEY"] else { throw ValidationError("CLERK_SECRET_KEY is not set") }
        let apiURL = apiURL ?? values["CLERK_API_URL"] ?? "https://api.clerk.com"
        let uri = try MongoURI(values["MONGODB_URI"] ?? Config.defaultMongoURI)
        let database = try Database(uri: uri, workers: 1, queueLimit: 10, logger: Logger(label: "backfill"))
        try database.withConnection { try Schema.ensureIndexes(on: $0) }
        var offset = 0
        var counts: [WebhookOutcome: Int] = [:]
        while true {
            guard var components = URLComponents(string: apiURL + "/v1/users") else { throw ValidationError("bad --api-url") }
            components.queryItems = [URLQueryItem(name: "limit", value: String(pageSize)), URLQueryItem(name: "offset", value: String(offset)),
                                     URLQueryItem(name: "order_by", value: "created_at")]
            guard let url = components.url else { throw ValidationError("bad --api-url") }
            var request = URLRequest(url: url)
            request.setValue("Bearer \(secret)", forHTTPHeaderField: "Authorization")
            let (status, body) = try HTTPCall.send(request)
            guard status == 200 else { throw ValidationError("Clerk answered \(status) for \(url.path)") }
            guard let page = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [Any] else {
                throw ValidationError("Clerk's answer is not a list of users")
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
        print("backfill done: \(counts[.applied] ?? 0) applied, \(counts[.superseded] ?? 0) already newer, \(counts[.duplicate] ?? 0) unchanged")
    }
}
