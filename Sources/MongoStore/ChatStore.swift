import ChatDomain
import Foundation

/// Conversations, messages and read state in MongoDB, one file per part: ChatStore+Conversations,
/// +Messages, +Receipts (reads, typing), +Outbox (the `events` records other instances read),
/// +Documents (BSON mapping). Every change that members must hear about also writes an `events`
/// record in the same transaction (a transactional outbox).
public enum ChatStore {
    public static let conversations = "conversations"
    public static let messages = "messages"
    public static let reads = "reads"
    public static let events = "events"
    /// Per conversation with messages: its `lastSeq`, `lastMessage` and the time of the last message.
    /// Apart from the conversation, so that a message does not rewrite the conversation document and
    /// its `members` index keys (one per member: 2/3 of a batch's database time in a group of 200).
    public static let heads = "conversation_heads"
    /// Events are a fan-out transport, not history: gone after a minute.
    static let eventRetention: TimeInterval = 60
    /// The (conversationId, seq) index, named for reads whose other fields would otherwise keep the
    /// embedded database from using it.
    static let bySequence: BSONDocument = BSONDocument([("conversationId", .int32(1)), ("seq", .int32(1))])

    public enum ChatError: Error, Equatable {
        case notFound(String)
        case forbidden(String)
        case invalid(String)
    }

}
