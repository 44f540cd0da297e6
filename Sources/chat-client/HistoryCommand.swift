import ArgumentParser
import ChatClient
import ChatDomain

/// `chat-client history`: one page of a conversation, one message per line, oldest first.
struct HistoryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "Print a page of a conversation's messages as JSON lines (oldest first).")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption
    @Option(help: "The conversation id.")
    var conversation: String
    @Option(help: "Messages with seq below this one (default: the newest page).")
    var before: Int64?
    @Option(help: "Messages with seq above this one.")
    var after: Int64?
    @Option(help: "At most this many (1-200).")
    var limit: Int = 50

    func validate() throws {
        if before != nil && after != nil { throw ValidationError("give --before or --after, not both") }
        guard (1...200).contains(limit) else { throw ValidationError("--limit must be 1-200") }
    }

    func run() throws {
        try guarded {
            let session = try BlockingSession(connection, developmentUser: identity.user)
            try session.connect()
            let data = try session.call(.history(HistoryQuery(conversationID: conversation, before: before, after: after, limit: limit)))
            for message in data["messages"]?.arrayValue ?? [] { Output.json(message) }
            session.close()
        }
    }
}
