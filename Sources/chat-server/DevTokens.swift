import ArgumentParser
import ClerkAuth
import Foundation

/// Creates the local development key pair (`make run` calls it when CLERK_JWT_KEY is unset).
struct DevKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-keys",
        abstract: "Create (once) the local RS256 key pair the development server trusts; print the public key.")

    @Option(help: "Directory of the key pair (git-ignored).")
    var dir: String = ".dev-keys"
    @Flag(help: "Print the development webhook secret instead (created once in the same directory; `make run` serves with it when CLERK_WEBHOOK_SECRET is unset).")
    var webhookSecret = false

    func run() throws {
        try runTool("dev-keys") {
            if webhookSecret {
                Console.print(try DevelopmentKeys.loadOrCreateWebhookSecret(in: URL(fileURLWithPath: dir)))
                return
            }
            let keys = try DevelopmentKeys.loadOrCreate(in: URL(fileURLWithPath: dir))
            Console.print(keys.publicKeyPEM, terminator: keys.publicKeyPEM.hasSuffix("\n") ? "" : "\n")
        }
    }
}

/// Mints a real RS256 session token signed with the development key, shaped like Clerk's.
struct MintToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mint-token",
        abstract: "Print a session token for a user, signed with the local development key (never in production).")

    @Option(help: "The user id (the token's sub).")
    var user: String
    @Option(help: "The session id (sid). Default: one derived from the user.")
    var session: String?
    @Option(help: "Lifetime in seconds.")
    var ttl: Int = 3600
    @Option(help: "Authorized party (azp), e.g. the web app's origin.")
    var azp: String?
    @Option(help: "Directory of the key pair.")
    var dir: String = ".dev-keys"

    func run() throws {
        try runTool("mint-token") { try mint() }
    }

    private func mint() throws {
        let keys = try DevelopmentKeys.loadOrCreate(in: URL(fileURLWithPath: dir))
        let token = try DevelopmentKeys.mint(privateKeyPEM: keys.privateKeyPEM, userID: user,
                                             sessionID: session ?? "sess_dev_\(user)", lifetime: TimeInterval(ttl),
                                             azp: azp, issuer: nil, kid: nil, now: Date())
        Console.print(token)
    }
}
