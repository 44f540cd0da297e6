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
        database.submit("message_batch", { c in try Self.store(sends, origin: origin, on: c) }) { [post] result in
            post { [self] in
                inFlight = false
                complete(batch, result)
                flush()
            }
        }
    }

    /// Conflicts the whole batch waits out before its conversations are tried one by one.
    static let batchRetry = RetryPolicy(budget: 1)
    /// Then each conversation alone gets this, all of them together `splitBudget` at most (after it,
    /// one attempt each).
    static let conversationRetry = 0.5
    static let splitBudget = 2.0

    /// Stores a batch in one transaction. When conflicts outlast its retry budget (typically a crashed
    /// instance's open transaction still holding a conversation) and the batch spans several
    /// conversations, each is tried alone, so that one blocked conversation does not hold back the
    /// others: its sends are answered `unavailable` and are resent by the clients.
    static func store(_ sends: [ChatStore.PendingSend], origin: String,
                      on c: MongoConnection) throws -> ([ChatStore.SendResult], [ChatStore.Fanout]) {
        do {
            return try ChatStore.sendBatch(sends, origin: origin, now: Date(), retry: batchRetry, on: c)
        } catch let error as DatabaseError where error.isBusy {
            let byConversation = Dictionary(grouping: sends.indices) { sends[$0].conversationID }
            guard byConversation.count > 1 else { throw error }
            let deadline = Date().addingTimeInterval(splitBudget)
            var results = [ChatStore.SendResult](repeating: .retryLater("not tried"), count: sends.count)
            var fanouts: [ChatStore.Fanout] = []
            for (_, indices) in byConversation.sorted(by: { $0.key < $1.key }) {
                let budget = max(0, min(conversationRetry, deadline.timeIntervalSinceNow))
                do {
                    let (stored, out) = try ChatStore.sendBatch(indices.map { sends[$0] }, origin: origin, now: Date(),
                                                                retry: RetryPolicy(budget: budget), on: c)
                    for (i, outcome) in zip(indices, stored) { results[i] = outcome }
                    fanouts += out
                } catch let failure as DatabaseError where failure.isUnavailable {
                    for i in indices { results[i] = .retryLater("\(failure)") }
                }
            }
            return (results, fanouts)
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
                case .retryLater:
                    waiting.session.fail(waiting.requestID, .unavailable, "conversation busy, retry")
                }
            }
            for fanout in fanouts { deliver(fanout) }
        case .failure(let error):
            for waiting in batch { ChatChannel.report(error, to: waiting.session, id: waiting.requestID, logger: logger) }
        }
    }
}
