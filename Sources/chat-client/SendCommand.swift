import ArgumentParser
import ChatClient
import ChatDomain
import Foundation

/// `chat-client send`: one message; prints the server's ack.
struct SendCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send", abstract: "Send one message and print the ack as JSON.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption
    @Option(help: "Send to this user (opens the direct conversation).")
    var to: String?
    @Option(help: "Send to this conversation id.")
    var conversation: String?
    @Option(help: "The message text.")
    var text: String
    @Option(help: "Idempotency key: sending again with the same one stores the message once (default: random).")
    var clientId: String?

    func validate() throws {
        guard (to == nil) != (conversation == nil) else { throw ValidationError("give --to <user> or --conversation <id>") }
    }

    func run() throws {
        try guarded {
            let session = try BlockingSession(connection, developmentUser: identity.user)
            try session.connect()
            var target = conversation ?? ""
            if let to {
                let opened = try session.call(.openDirect(userID: to))
                guard let id = Conversation(json: opened["conversation"])?.id else { throw Failure("unexpected reply to conversation.direct") }
                target = id
            }
            let ack = try session.call(.send(conversationID: target, clientID: clientId ?? UUID().uuidString.lowercased(), text: text))
            Output.json(.object(ack))
            session.close()
        }
    }
}
