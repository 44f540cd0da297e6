import Foundation

/// Where a page of `conversations.list` ended: the last conversation's `updatedAt` and id, which
/// together order conversations totally (latest activity first, then id descending). Clients see it as
/// an opaque string: `<updatedAt in ms>.<conversationId>`.
public struct ConversationCursor: Equatable, Sendable {
    public var updatedAt: Date
    public var conversationID: String

    public init(updatedAt: Date, conversationID: String) {
        self.updatedAt = updatedAt
        self.conversationID = conversationID
    }

    public init?(_ text: String) {
        guard let dot = text.firstIndex(of: "."), let ms = Int64(text[..<dot]), ms >= 0 else { return nil }
        let id = String(text[text.index(after: dot)...])
        guard ChatRules.isValidConversationID(id) else { return nil }
        self.init(updatedAt: Date(timeIntervalSince1970: Double(ms) / 1000), conversationID: id)
    }

    public var text: String {
        "\(Int64((updatedAt.timeIntervalSince1970 * 1000).rounded())).\(conversationID)"
    }
}
