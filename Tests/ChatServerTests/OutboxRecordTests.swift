import ChatDomain
import Foundation
@testable import MongoStore
import Testing

/// A message batch's `events` records: what another instance reads back from them is every message
/// of every conversation of the batch, with that conversation's recipients and seq, once.
@Suite struct OutboxRecordTests {
    static func batch(_ conversation: String, members: [String], seqs: ClosedRange<Int64>) -> [Fanout] {
        seqs.map { seq in
            Fanout(.message(ChatMessage(id: "m_\(conversation)_\(seq)", conversationID: conversation, seq: seq, senderID: members[0],
                                        clientID: "c\(seq)", text: String(repeating: "x", count: 100), createdAt: Date(timeIntervalSince1970: 1))),
                   recipients: members)
        }
    }

    static let batches = [
        batch("dm:a:b", members: ["a", "b"], seqs: 1...3),
        batch("g_1", members: (0..<200).map { "u\($0)" }, seqs: 41...48),
        batch("dm:c:d", members: ["c", "d"], seqs: 7...7),
    ]

    static func readBack(_ records: [BSONDocument]) -> [Fanout] {
        records.flatMap { record -> [Fanout] in
            guard let (origin, fanouts) = ChatStore.fanouts(fromEvent: record) else { Issue.record("record not read"); return [] }
            #expect(origin == "instance-1")
            return fanouts
        }
    }

    static func key(_ f: Fanout) -> String { "\(f.conversationID) \(f.seq ?? -1) \(f.recipients.joined(separator: ",")) \(f.frame.count)" }

    @Test func oneRecordCarriesEveryConversationOfTheBatch() {
        let records = ChatStore.batchEventDocuments(Self.batches, origin: "instance-1", now: Date())
        #expect(records.count == 1)
        let back = Self.readBack(records)
        let sent = Self.batches.flatMap { $0 }
        #expect(back.map(Self.key) == sent.map(Self.key))
        #expect(back.map(\.frame) == sent.map(\.frame))
        #expect(records[0]["expireAt"]?.dateValue != nil)
    }

    @Test func aLargeBatchIsCutIntoRecordsAtTheByteBoundWithoutLosingAnything() {
        // The group's entry alone is over the bound: it gets a record of its own, never split.
        let records = ChatStore.batchEventDocuments(Self.batches, origin: "instance-1", now: Date(), recordBytes: 1000)
        #expect(records.count == 3)
        #expect(Self.readBack(records).map(Self.key) == Self.batches.flatMap { $0 }.map(Self.key))
    }

    @Test func aSingleConversationRecordIsStillRead() {
        let one = ChatStore.eventDocument(Self.batches[0], origin: "instance-1", now: Date())
        #expect(Self.readBack([one]).map(Self.key) == Self.batches[0].map(Self.key))
    }
}
