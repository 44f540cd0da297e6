import ArgumentParser
import ChatClient
import ChatDomain
import Foundation

/// `chat-client wait-for`: blocks until a matching message or presence change, prints it, exits 0;
/// exits 1 at the timeout.
struct WaitForCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wait-for",
        abstract: "Wait for a message or a presence state; print it as JSON; exit 1 on timeout.",
        discussion: """
            message: the first new message matching every filter given. With --state, messages that arrived \
            since the state was saved count too (nothing is missed between two runs).
            presence: --user's presence is --online (default true); the current state counts.
            Here --user names the watched user: mint a development token with --as <id>.
            """)

    enum Kind: String, ExpressibleByArgument, CaseIterable { case message, presence }

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "message or presence")
    var kind: Kind
    @Option(help: "message: sent by this user.")
    var from: String?
    @Option(help: "message: in this conversation.")
    var conversation: String?
    @Option(help: "message: whose text contains this.")
    var textContains: String?
    @Option(help: "presence: the user to watch.")
    var user: String?
    @Option(help: "presence: wait until the user is online (true) or offline (false).")
    var online: Bool = true
    @Option(name: .customLong("as"), help: "Development: connect as this user id (a token minted with the local key).")
    var identity: String?
    @Option(help: "Give up after this many seconds (exit status 1).")
    var timeout: Double = 30

    func validate() throws {
        if kind == .presence && user == nil { throw ValidationError("wait-for presence needs --user <id>") }
        if kind == .message && user != nil {
            throw ValidationError("--user names the watched user of wait-for presence; connect as a user with --as <id>")
        }
    }

    func run() throws {
        try guarded {
            let deadline = Date().addingTimeInterval(timeout)
            let session = try BlockingSession(connection, developmentUser: identity)
            try session.connect(timeout: max(1, deadline.timeIntervalSinceNow))
            if kind == .presence, let user {
                let data = try session.call(.presenceSubscribe(userIDs: [user]))
                if let now = data["users"]?.arrayValue?.compactMap({ PresenceSnapshot(json: $0) }).first, now.isOnline == online {
                    return found(.presence(now), session)
                }
            }
            while let event = try session.nextEvent(until: deadline) {
                if matches(event) { return found(event, session) }
            }
            session.close()
            throw Failure("timed out after \(timeout.formatted()) s waiting for \(describe())")
        }
    }

    private func found(_ event: ChatEvent, _ session: BlockingSession) {
        Output.json(event.json)
        session.close()
    }

    private func matches(_ event: ChatEvent) -> Bool {
        switch (kind, event) {
        case (.message, .message(let m)):
            if let from, m.senderID != from { return false }
            if let conversation, m.conversationID != conversation { return false }
            if let textContains, !(m.text ?? "").contains(textContains) { return false }
            return true
        case (.presence, .presence(let p)):
            return p.userID == user && p.isOnline == online
        default:
            return false
        }
    }

    private func describe() -> String {
        switch kind {
        case .presence: return "\(user ?? "") to be \(online ? "online" : "offline")"
        case .message:
            var parts = ["a message"]
            if let from { parts.append("from \(from)") }
            if let conversation { parts.append("in \(conversation)") }
            if let textContains { parts.append("containing '\(textContains)'") }
            return parts.joined(separator: " ")
        }
    }
}

extension Double {
    func formatted() -> String { self == rounded() ? String(Int(self)) : String(self) }
}
