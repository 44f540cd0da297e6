import ChatDomain
import Foundation
import Logging
import Metrics
import MongoStore
import ServiceLoop

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

    private let loop: ServiceLoop
    private let database: Database
    private let maxBatch: Int
    private let instanceID: String
    private let logger: Logger
    private let deliver: (Fanout) -> Void
    private var queue: [Waiting] = []
    private var inFlight = false
    // Their ratio is the mean batch size: how many sends share a transaction.
    private let committedBatches = Counter(label: "chat_message_batches_total")
    /// Transactions committed by this batcher (the counter above, readable here).
    private(set) var batchesCommitted = 0
    private let committedSends = Counter(label: "chat_message_batch_sends_total")

    init(loop: ServiceLoop, database: Database, maxBatch: Int, instanceID: String, logger: Logger,
         deliver: @escaping (Fanout) -> Void) {
        self.loop = loop
        self.database = database
        self.maxBatch = maxBatch
        self.instanceID = instanceID
        self.logger = logger
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
        let now = Date()
        blocked = blocked.filter { $0.value > now }
        let suspects = Set(blocked.keys)
        let known = remembered.lookUp(Set(sends.map(\.conversationID)))
        database.submit("message_batch", on: loop, { c in try Self.store(sends, known: known, origin: origin, suspects: suspects, on: c) }) { [self] result in
            inFlight = false
            switch result {
            case .success(let stored):
                let until = Date().addingTimeInterval(Self.suspectFor)
                for id in stored.blocked { blocked[id] = until }
                for id in stored.unblocked { blocked[id] = nil }
                remembered.remember(stored.known)
                conversationsNotRead += stored.unread
            case .failure:
                remembered.forget(known.keys)
            }
            complete(batch, result.map { ($0.results, $0.fanouts) })
            flush()
        }
    }

    /// The members of the conversations this batcher's commits wrote: the next batch into one does not
    /// read its document while the head's `rev` (moved by every change of members) is unchanged.
    private var remembered = RememberedConversations(maxMembers: 200_000)
    /// Conversations written without being read, thanks to `remembered`.
    private(set) var conversationsNotRead = 0

    /// Conversations found blocked (conflicts past the retry budget, typically a crashed instance's
    /// transaction still open on them), until when: their sends go apart, so they do not hold back the rest.
    private var blocked: [String: Date] = [:]
    static let suspectFor: TimeInterval = 5

    /// Conflicts a batch waits out before its conversations are tried one by one.
    static let batchRetry = RetryPolicy(budget: 0.5)
    /// Then each conversation alone gets this, all of them together `splitBudget` at most (after it,
    /// one attempt each).
    static let conversationRetry = 0.25
    static let splitBudget = 1.0
    /// A conversation recently found blocked gets one short try per batch: it answers `unavailable`
    /// at once while blocked, and is stored as soon as it is free.
    static let suspectRetry = RetryPolicy(budget: 0.05)

    struct Stored: Sendable {
        var results: [ChatStore.SendResult]
        var fanouts: [Fanout]
        var known: [String: ChatStore.KnownConversation] = [:]
        var unread = 0
        var blocked: Set<String> = []
        var unblocked: Set<String> = []
    }

    /// Stores a batch: one transaction for the sends into conversations not under suspicion; when its
    /// conflicts outlast the retry budget and it spans several conversations, each is tried alone, so
    /// that one blocked conversation does not hold back the others. Sends into `suspects` are tried
    /// apart, briefly. Sends into a blocked conversation are answered `unavailable` (the clients resend
    /// them with the same client id), never `internal`.
    static func store(_ sends: [ChatStore.PendingSend], known: [String: ChatStore.KnownConversation] = [:], origin: String, suspects: Set<String>,
                      on c: MongoConnection) throws -> Stored {
        var out = Stored(results: [ChatStore.SendResult](repeating: .retryLater("not tried"), count: sends.count), fanouts: [])
        let (apart, together) = sends.indices.reduce(into: ([Int](), [Int]())) { acc, i in
            if suspects.contains(sends[i].conversationID) { acc.0.append(i) } else { acc.1.append(i) }
        }

        /// Stores `indices` in one transaction; false when conflicts outlasted `retry`.
        func attempt(_ indices: [Int], _ retry: RetryPolicy) throws -> Bool {
            do {
                let batch = try ChatStore.sendBatch(indices.map { sends[$0] }, known: known, origin: origin, now: Date(), retry: retry, on: c)
                for (i, outcome) in zip(indices, batch.results) { out.results[i] = outcome }
                out.fanouts += batch.fanouts
                out.known.merge(batch.known) { $1 }
                out.unread += batch.unread
                return true
            } catch let error as DatabaseError where error.isBusy {
                for i in indices { out.results[i] = .retryLater("\(error)") }
                return false
            } catch where !out.fanouts.isEmpty {
                // Other sends of this job are stored: they must get their acks, so these are answered
                // `unavailable` (a resend is safe) rather than failing the job (`internal` stores nothing).
                for i in indices { out.results[i] = .retryLater("\(error)") }
                return true
            }
        }
        func byConversation(_ indices: [Int]) -> [(String, [Int])] {
            Dictionary(grouping: indices) { sends[$0].conversationID }.sorted { $0.key < $1.key }
        }

        if !together.isEmpty, try !attempt(together, batchRetry) {
            let groups = byConversation(together)
            if groups.count == 1 {
                out.blocked.insert(groups[0].0)
            } else {
                let deadline = Date().addingTimeInterval(splitBudget)
                for (id, indices) in groups {
                    let budget = max(0, min(conversationRetry, deadline.timeIntervalSinceNow))
                    if try !attempt(indices, RetryPolicy(budget: budget)) { out.blocked.insert(id) }
                }
            }
        }
        for (id, indices) in byConversation(apart) {
            if try attempt(indices, suspectRetry) { out.unblocked.insert(id) } else { out.blocked.insert(id) }
        }
        return out
    }

    private func complete(_ batch: [Waiting], _ result: Result<([ChatStore.SendResult], [Fanout]), any Error>) {
        switch result {
        case .success(let (results, fanouts)):
            committedBatches.increment()
            batchesCommitted += 1
            committedSends.increment(by: batch.count)
            for (waiting, outcome) in zip(batch, results) {
                switch outcome {
                case .stored(let m, _):
                    waiting.session.send(.ok(id: waiting.requestID, data: [
                        "conversationId": .string(m.conversationID), "clientId": .string(m.clientID),
                        "messageId": .string(m.id), "seq": .int(m.seq), "createdAt": .string(JSONValue.iso8601(m.createdAt)),
                    ]))
                case .failed(let error):
                    waiting.session.fail(waiting.requestID, RequestFailure(error, operation: "message_batch", logger: logger))
                case .retryLater:
                    waiting.session.fail(waiting.requestID, .unavailable, "conversation busy, retry")
                }
            }
            for fanout in fanouts { deliver(fanout) }
        case .failure(let error):
            let failure = RequestFailure(error, operation: "message_batch", logger: logger)
            for waiting in batch { waiting.session.fail(waiting.requestID, failure) }
        }
    }
}

/// Conversations as this process's commits left them (members, rev), bounded by the member
/// ids held in all (a 1,000-member group costs a thousand): past `maxMembers`, the oldest half goes.
struct RememberedConversations {
    let maxMembers: Int
    private var byID: [String: ChatStore.KnownConversation] = [:]
    /// Insertion order; may name conversations forgotten since (skipped when dropping).
    private var order: [String] = []
    private(set) var members = 0

    init(maxMembers: Int) { self.maxMembers = maxMembers }

    var count: Int { byID.count }

    func lookUp(_ ids: Set<String>) -> [String: ChatStore.KnownConversation] {
        Dictionary(uniqueKeysWithValues: ids.compactMap { id in byID[id].map { (id, $0) } })
    }

    mutating func remember(_ known: [String: ChatStore.KnownConversation]) {
        for (id, k) in known {
            if let old = byID.updateValue(k, forKey: id) {
                members -= old.conversation.members.count
            } else {
                order.append(id)
            }
            members += k.conversation.members.count
        }
        guard members > maxMembers || order.count > 2 * max(byID.count, 1_000) else { return }
        var kept: [String] = []
        var seen: Set<String> = []
        let dropping = members > maxMembers ? byID.count / 2 : 0
        for id in order where byID[id] != nil && seen.insert(id).inserted {
            if seen.count <= dropping, let old = byID.removeValue(forKey: id) {
                members -= old.conversation.members.count
            } else {
                kept.append(id)
            }
        }
        order = kept
    }

    mutating func forget(_ ids: some Sequence<String>) {
        for id in ids {
            if let old = byID.removeValue(forKey: id) { members -= old.conversation.members.count }
        }
    }
}
