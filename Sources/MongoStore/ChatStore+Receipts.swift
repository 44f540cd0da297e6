import ChatDomain
import Foundation

/// Read positions and typing signals.
extension ChatStore {
    /// Stores "read up to seq" (never backwards) and tells the other members.
    public static func markRead(_ me: String, conversationID: String, seq: Int64, origin: String, now: Date, on c: MongoConnection) throws -> (Int64, Fanout) {
        try c.withTransaction { tx in
            let conversation = try member(me, of: conversationID, withHead: true, on: tx)
            let capped = min(seq, conversation.lastSeq)
            try tx.collection(reads).updateOne(["_id": .string(conversationID + "|" + me)], [
                "$max": ["seq": .int64(capped)],
                "$set": ["conversationId": .string(conversationID), "userId": .string(me), "updatedAt": .date(now)],
            ], upsert: true)
            let stored = try tx.collection(reads).findOne(["_id": .string(conversationID + "|" + me)])?["seq"]?.int64Value ?? capped
            let event = ConversationEvent.read(conversationID: conversationID, userID: me, seq: stored)
            return (stored, try record(Fanout(event, recipients: conversation.members), origin: origin, now: now, on: tx))
        }
    }

    /// A typing signal: checked for membership, carried to other instances by the event transport,
    /// never kept (the event expires with the others).
    public static func typing(_ me: String, conversationID: String, expiresInMs: Int, origin: String, now: Date, on c: MongoConnection) throws -> Fanout {
        let conversation = try member(me, of: conversationID, on: c)
        let event = ConversationEvent.typing(conversationID: conversationID, userID: me, expiresInMs: expiresInMs)
        return try record(Fanout(event, recipients: conversation.members, exclude: me), origin: origin, now: now, on: c)
    }
}
