import ArgumentParser

/// `chat-client`: the interactive client by default, one-shot JSON subcommands for scripts.
struct ChatClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-client",
        abstract: "A terminal client for chat-server (protocol chat.v1).",
        discussion: """
            Without a subcommand: the interactive client (type /help in it). The other subcommands print one \
            JSON object per line and exit non-zero on failure. Token: --token, --token-file, --user <id> \
            (development: minted with the key in .dev-keys/) or CHAT_TOKEN. Server: --url or CHAT_URL \
            (default ws://127.0.0.1:$PORT/ws, PORT from the environment or .env as for chat-server, else 3000). See docs/chat-client.md.
            """,
        subcommands: [InteractiveCommand.self, SendCommand.self, HistoryCommand.self, WhoCommand.self,
                      ConversationsCommand.self, WaitForCommand.self, ScriptCommand.self],
        defaultSubcommand: InteractiveCommand.self)
}
