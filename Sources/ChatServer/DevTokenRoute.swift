import ChatDomain
import ClerkAuth
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// `POST /dev/token` `{"userId": "alice"}` -> `{"token", "userId", "expiresAt"}`: the web app's
/// "sign in as" in development. It exists only while the server trusts the local development key pair
/// (`Config.devSigningKey`): never in production, never with a real Clerk instance configured.
/// The user also gets a directory entry (username = the id), as Clerk's `user.created` webhook would
/// give them, so that others find them by name.
final class DevTokenRoute {
    static let path = "/dev/token"
    /// As long as a Clerk session token: the page refreshes like it would with Clerk.
    static let lifetime: TimeInterval = 60

    private let privateKeyPEM: String
    private let database: Database
    private let logger: Logger
    private let loop: ServiceLoop

    init(privateKeyPEM: String, database: Database, logger: Logger, loop: ServiceLoop) {
        self.privateKeyPEM = privateKeyPEM
        self.database = database
        self.logger = logger
        self.loop = loop
    }

    func action(_ head: HTTPRequestHead) -> HTTPAction {
        // A JSON content type cannot be sent cross-site without a CORS preflight, which this server
        // never grants: another site's page cannot mint tokens through a visitor's browser.
        guard (head.header("content-type") ?? "").lowercased().hasPrefix("application/json") else {
            return .respond(.json(415, ["error": "send Content-Type: application/json"]))
        }
        // DNS rebinding (a site whose name resolves to this machine) would make its page same-origin
        // with this server: answer only requests addressed to localhost or an IP address.
        guard Self.isLocalOrAddress(host: head.header("host")) else {
            return .respond(.json(403, ["error": "development sign-in answers only at localhost or an IP address"]))
        }
        return .readBody(limit: 1024, keepHeaders: []) { [self] request, responder in handle(request, responder) }
    }

    /// `localhost[:port]`, an IPv4 address or a bracketed IPv6 address: names no other site can own.
    static func isLocalOrAddress(host: String?) -> Bool {
        guard let host, !host.isEmpty else { return false }
        if host.hasPrefix("[") { return host.contains("]") }   // [::1]:3000
        let name = host.split(separator: ":", maxSplits: 1)[0].lowercased()
        if name == "localhost" { return true }
        let octets = name.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { UInt8($0) != nil }
    }

    static func validUserID(_ id: String) -> Bool {
        (1...64).contains(id.utf8.count) && id.unicodeScalars.allSatisfy {
            ($0.isASCII && CharacterSet.alphanumerics.contains($0)) || "_-.".unicodeScalars.contains($0)
        }
    }

    private func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
              let userID = object["userId"] as? String, Self.validUserID(userID) else {
            responder.respond(.json(400, ["error": "expected {\"userId\": \"<1-64 letters, digits, _ - .>\"}"]))
            return
        }
        let now = Date()
        let token: String
        do {
            token = try DevelopmentKeys.mint(privateKeyPEM: privateKeyPEM, userID: userID, sessionID: "sess_dev_\(userID)",
                                             lifetime: Self.lifetime, azp: nil, issuer: nil, kid: nil, now: now)
        } catch {
            logger.error("development token not minted", metadata: ["error": "\(error)"])
            responder.respond(.json(500, ["error": "could not mint a token"]))
            return
        }
        let expiresAt = Int(now.timeIntervalSince1970) + Int(Self.lifetime)
        // The oldest possible updated_at: any real webhook for this id wins over this profile.
        let event = ClerkEvent.userUpserted(type: "user.created",
                                            profile: UserProfile(clerkID: userID, username: userID, firstName: userID.prefix(1).uppercased() + userID.dropFirst()),
                                            clerkUpdatedAt: 1)
        database.submit("dev_sign_in", on: loop, { c in
            try UserStore.apply(event, deliveryID: "dev_sign_in_\(userID)", now: now, on: c)
        }) { [logger] result in
            switch result {
            case .success:
                logger.info("development sign-in", metadata: ["user": "\(userID)"])
                let body: [String: Any] = ["token": token, "userId": userID, "expiresAt": expiresAt]
                let data = (try? JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])) ?? Data("{}".utf8)
                responder.respond(HTTPResponse(status: 200, headers: [("cache-control", "no-store")], body: Array(data)))
            case .failure(let error):
                logger.error("development sign-in not stored", metadata: ["error": "\(error)"])
                responder.respond(.json(503, ["error": "database unavailable, retry later"]))
            }
        }
    }
}
