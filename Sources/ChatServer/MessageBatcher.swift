import ChatDomain
import Foundation
import Logging
import Metrics
import MongoStore

/// Group commit for chat messages (service thread): sends queue up while one transaction is in
/// flight and go together in the next, so many senders share each database round trip. An idle
/// server writes a lone message at once; a busy one writes hundreds per transaction. An ack is sent
/// only after its transaction committed.
final class MessageBatcher {
    struct Waiting {
        let session: ChatSession
        let requestID: String?
        let send: ChatStore.PendingSend
    }

    private let database: Database
    private let maxBatch: Int
    private let instanceID: String
    private let logger: Logger
    private let post: (@escaping () -> Void) -> Void
    private let deliver: (ChatStore.Fanout) -> Void
    private var queue: [Waiting] = []
    private var inFlight = false
    // Their ratio is the mean batch size: how many sends share a transaction.
    private let committedBatches = Counter(label: "chat_message_batches_total")
    private let committedSends = Counter(label: "chat_message_batch_sends_total")

    init(database: Database, maxBatch: Int, instanceID: String, logger: Logger,
         post: @escaping (@escaping () -> Void) -> Void, deliver: @escaping (ChatStore.Fanout) -> Void) {
        self.database = database
        self.maxBatch = maxBatch
        self.instanceID = instanceID
        self.logger = logger
        self.post = post
        self.deliver = deliver
    }

    var isIdle: Bool { !inFlight && queue.isEmpty }

    func enqueue(_ waiting: Waiting) {
        queue.append(waiting)
        if !inFlight { flush() }
    }

    private func flush() {
        guard !queue.isEmpty else { return }
        let batch = Array(queue.prefix(maxBatch))
        queue.removeFirst(batch.count)
        inFlight = true
        let sends = batch.map(\.send)
        let origin = instanceID
        database.submit("message_batch", { c in
            // A concurrent writer (another instance) can take the same sequence numbers first, or a
            // send can repeat a stored client id: a unique index refuses the batch, and it is retried,
            // this time looking up earlier sends (a resend gets its first ack).
            var attempt = 0
            while true {
                attempt += 1
                do {
                    return try ChatStore.sendBatch(sends, origin: origin, now: Date(), lookUpEarlier: attempt > 1, on: c)
                } catch let error as DatabaseError {
                    switch error {
                    case .duplicateKey where attempt < 8: continue
                    case .failed(_, 112, _) where attempt < 8: continue
                    default: throw error
                    }
                }
            }
        }) { [post] result in
            post { [self] in
                inFlight = false
                complete(batch, result)
                flush()
            }
        }
    }

    private func complete(_ batch: [Waiting], _ result: Result<([ChatStore.SendResult], [ChatStore.Fanout]), Error>) {
        switch result {
        case .success(let (results, fanouts)):
            committedBatches.increment()
            committedSends.increment(by: batch.count)
            for (waiting, outcome) in zip(batch, results) {
                switch outcome {
                case .stored(let m, _):
                    waiting.session.send(.ok(id: waiting.requestID, data: [
                        "conversationId": .string(m.conversationID), "clientId": .string(m.clientID),
                        "messageId": .string(m.id), "seq": .int(m.seq), "createdAt": .string(JSONValue.iso8601(m.createdAt)),
                    ]))
                case .failed(let error):
                    ChatChannel.report(error, to: waiting.session, id: waiting.requestID, logger: logger)
                }
            }
            for fanout in fanouts { deliver(fanout) }
        case .failure(let error):
            for waiting in batch { ChatChannel.report(error, to: waiting.session, id: waiting.requestID, logger: logger) }
        }
    }
}
