import ArgumentParser
import Foundation

// chat-bench: a load generator for chat-server. Thousands of WebSocket clients share one
// WebSocketClientLoop (one service thread); every connection authenticates with a real RS256 token.
// Each scenario prints its parameters and results, and appends one JSON object to --json-out.

struct ChatBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-bench",
        abstract: "Load scenarios against a running chat-server (see scripts/bench.sh).",
        subcommands: [Keys.self, Idle.self, Fanout.self, DirectMessages.self, Churn.self, Webhook.self, Reconnect.self])
}

raiseFileLimit()
ChatBench.main()
