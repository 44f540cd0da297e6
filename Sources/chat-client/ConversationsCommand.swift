import ArgumentParser
import ChatClient
import ChatDomain

/// `chat-client conversations`: my conversations, latest activity first, with unread counts.
struct ConversationsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conversations", abstract: "Print my conversations (with unread and lastMessage) as JSON lines.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption
    @Option(help: "At most this many (1-200); with --all, the page size.")
    var limit: Int = 50
    @Flag(help: "Every conversation, page after page.")
    var all = false

    func validate() throws {
        guard (1...200).contains(limit) else { throw ValidationError("--limit must be 1-200") }
    }

    func run() throws {
        try guarded {
            let session = try BlockingSession(connection, developmentUser: identity.user)
            try session.connect()
            var before: ConversationCursor?
            repeat {
                let data = try session.call(.listConversations(limit: limit, before: before))
                for conversation in data["conversations"]?.arrayValue ?? [] { Output.json(conversation) }
                before = all ? data["next"]?.stringValue.flatMap(ConversationCursor.init) : nil
            } while before != nil
            session.close()
        }
    }
}
