import ChatDomain
import Foundation

/// The transactional outbox: `events` records written with each change, read by other instances'
/// change streams. A record carries the encoded frames, so no instance encodes an event twice.
extension ChatStore {
    /// The fan-outs an `events` record carries: one conversation's (several messages of one
    /// conversation share one record, so the recipient list is stored once per batch, not once per
    /// message), or, for a message batch, several conversations' under `conversations`.
    public static func fanouts(fromEvent doc: BSONDocument) -> (origin: String, [Fanout])? {
        guard let origin = doc["origin"]?.stringValue else { return nil }
        if let entries = doc["conversations"]?.arrayValue {
            return (origin, entries.compactMap(\.documentValue).flatMap { fanouts(origin: origin, $0) ?? [] })
        }
        return fanouts(origin: origin, doc).map { (origin, $0) }
    }

    private static func fanouts(origin: String, _ doc: BSONDocument) -> [Fanout]? {
        guard let conversation = doc["conversationId"]?.stringValue,
              let frames = doc["frames"]?.arrayValue, let recipients = doc["recipients"]?.arrayValue else { return nil }
        let members = recipients.compactMap(\.stringValue)
        let seqs = doc["seqs"]?.arrayValue
        let exclude = doc["exclude"]?.stringValue
        return frames.enumerated().compactMap { i, frame in
            frame.stringValue.map { Fanout(conversationID: conversation, recipients: members, exclude: exclude,
                                           seq: seqs?[i].int64Value, frame: Array($0.utf8)) }
        }
    }

    /// A message batch's records: each conversation's messages as one entry, as few records as fit
    /// `recordBytes` (a record per conversation cost the embedded database an insert and a
    /// change-stream document each; a batch can span hundreds of conversations).
    static func batchEventDocuments(_ batches: [[Fanout]], origin: String, now: Date, recordBytes: Int = 4 << 20) -> [BSONDocument] {
        var records: [BSONDocument] = []
        var entries: [BSONValue] = []
        var bytes = 0
        func close() {
            guard !entries.isEmpty else { return }
            records.append(["conversations": .array(entries), "origin": .string(origin),
                            "expireAt": .date(now.addingTimeInterval(eventRetention))])
            entries = []
            bytes = 0
        }
        for batch in batches where !batch.isEmpty {
            let size = batch.reduce(0) { $0 + $1.frame.count + 16 } + batch[0].recipients.reduce(0) { $0 + $1.utf8.count + 8 }
            if bytes > 0 && bytes + size > recordBytes { close() }
            var entry = eventDocument(batch, origin: origin, now: now)
            entry["origin"] = nil
            entry["expireAt"] = nil
            entries.append(.document(entry))
            bytes += size
        }
        close()
        return records
    }

    /// Writes the `events` record of one fan-out (in the caller's transaction) and returns it.
    static func record(_ f: Fanout, origin: String, now: Date, on c: MongoConnection) throws -> Fanout {
        try c.collection(events).insertOne(eventDocument([f], origin: origin, now: now))
        return f
    }

    static func eventDocument(_ batch: [Fanout], origin: String, now: Date) -> BSONDocument {
        let first = batch[0]
        var doc: BSONDocument = [
            "conversationId": .string(first.conversationID), "recipients": .array(first.recipients.map { .string($0) }),
            "frames": .array(batch.map { .string(String(decoding: $0.frame, as: UTF8.self)) }), "origin": .string(origin),
            "expireAt": .date(now.addingTimeInterval(eventRetention)),
        ]
        if let exclude = first.exclude { doc["exclude"] = .string(exclude) }
        if first.seq != nil { doc["seqs"] = .array(batch.map { .int64($0.seq ?? 0) }) }
        return doc
    }

    static func announce(_ conversation: Conversation, to audience: [String]? = nil, origin: String, now: Date,
                         on c: MongoConnection) throws -> Fanout {
        try record(Fanout(.conversation(conversation), recipients: audience ?? conversation.members), origin: origin, now: now, on: c)
    }

    /// Other instances' outbox records, as fan-outs (the pipeline drops `origin`'s own: it delivered them).
    public static func outboxFeed(excludingOrigin origin: String, _ handler: @escaping @Sendable ([Fanout]) -> Void) -> ChangeFeed.Route {
        ChangeFeed.Route(collection: events, match: ["operationType": .string("insert"), "fullDocument.origin": ["$ne": .string(origin)]]) { change in
            guard let doc = change["fullDocument"]?.documentValue, let (_, fanouts) = fanouts(fromEvent: doc) else { return }
            handler(fanouts)
        }
    }
}
