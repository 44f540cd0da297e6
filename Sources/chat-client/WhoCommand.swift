import ArgumentParser
import ChatClient
import ChatDomain

/// `chat-client who`: the user directory with presence, one user per line.
struct WhoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "who", abstract: "Print users with their presence (isOnline, lastSeen) as JSON lines.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption
    @Flag(help: "Only users online now.")
    var online = false
    @Option(help: "Case-insensitive substring of username, first or last name, or email.")
    var search: String?

    func run() throws {
        try guarded {
            let session = try BlockingSession(connection, developmentUser: identity.user)
            try session.connect()
            var after: String?
            repeat {
                let data = try session.call(.usersQuery(UsersQuery(search: search, onlineOnly: online, limit: 200, after: after)))
                for user in data["users"]?.arrayValue ?? [] { Output.json(user) }
                after = data["next"]?.stringValue
            } while after != nil
            session.close()
        }
    }
}
