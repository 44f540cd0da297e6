import Logging
import WebSocketServer

/// The WebSocket chat channel (service thread).
final class ChatChannel: WebSocketService, ClerkSessionListener {
    private let logger: Logger

    init(logger: Logger) { self.logger = logger }

    func refusal(forUpgrade request: UpgradeRequest) -> String? { "the chat channel is not enabled yet" }
    func opened(_ connection: WebSocketConnection) {}
    func received(_ connection: WebSocketConnection, message: [UInt8]) {}
    func closed(_ connection: WebSocketConnection) {}
    func tick() {}
    func userDeleted(clerkID: String) {}
    func sessionEnded(sessionID: String) {}

    /// Closes every socket with the "reconnect" code, then calls `done`.
    func drain(done: @escaping () -> Void) { done() }
}
