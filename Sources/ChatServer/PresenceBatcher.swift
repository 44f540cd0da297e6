import ChatDomain
import Foundation
import Metrics
import MongoStore
import ServiceLoop

/// Group commit for connection records (service thread), as MessageBatcher does for messages: the
/// connects that arrive while a connect batch is in flight go together in the next one, and so do
/// disconnects, so a reconnect storm costs a few database round trips per batch instead of 3-5 per
/// socket. An idle server writes a lone connect at once. Connects and disconnects are batched apart,
/// at most `maxInFlight` batches of each at once (the next one's round trips overlap the last's): the
/// recount in `PresenceStore.reconcile` makes them safe to overlap, as they were when each socket
/// was its own job.
final class PresenceBatcher {
    typealias ConnectDone = (Result<PresenceStore.ConnectOutcome, any Error>) -> Void

    /// Most requests in one batch: bounds a batch's time in the database, so heartbeats and messages
    /// are not queued behind a storm (each query's `$in` is cut smaller still: `PresenceStore.inChunk`).
    static let maxBatch = 250
    static let maxInFlight = 2

    private let loop: ServiceLoop
    private let database: Database
    private let instanceID: String
    /// Users watched on this instance: only their presence is read back after a write (the others'
    /// changes reach watchers elsewhere through the change stream).
    private let watched: (String) -> Bool
    /// A disconnect batch's result: each request with its user's presence afterwards, or the error.
    private let disconnected: ([PresenceStore.DisconnectRequest], Result<[PresenceSnapshot?], any Error>) -> Void
    private var connects: [(request: PresenceStore.ConnectRequest, done: ConnectDone)] = []
    private var disconnects: [PresenceStore.DisconnectRequest] = []
    private var connectsInFlight = 0
    private var disconnectsInFlight = 0

    /// Batches written and their database round trips (the counters below, readable here): their
    /// ratio to `requestsWritten` is what each connect or disconnect costs the database.
    private(set) var batchesWritten = 0
    private(set) var requestsWritten = 0
    private(set) var operations = 0

    init(loop: ServiceLoop, database: Database, instanceID: String, watched: @escaping (String) -> Bool,
         disconnected: @escaping ([PresenceStore.DisconnectRequest], Result<[PresenceSnapshot?], any Error>) -> Void) {
        self.loop = loop
        self.database = database
        self.instanceID = instanceID
        self.watched = watched
        self.disconnected = disconnected
    }

    var isIdle: Bool { connectsInFlight == 0 && disconnectsInFlight == 0 && connects.isEmpty && disconnects.isEmpty }

    func connect(_ request: PresenceStore.ConnectRequest, done: @escaping ConnectDone) {
        connects.append((request, done))
        if connectsInFlight < Self.maxInFlight { flushConnects() }
    }

    func disconnect(_ request: PresenceStore.DisconnectRequest) {
        disconnects.append(request)
        if disconnectsInFlight < Self.maxInFlight { flushDisconnects() }
    }

    private func flushConnects() {
        guard !connects.isEmpty else { return }
        let batch = Array(connects.prefix(Self.maxBatch))
        connects.removeFirst(batch.count)
        connectsInFlight += 1
        let (requests, instanceID) = (batch.map(\.request), self.instanceID)
        let readBack = Set(requests.map(\.userID).filter(watched))
        database.submit("presence_connect", on: loop, { c in
            try PresenceStore.connect(requests, instanceID: instanceID, now: Date(), readBack: readBack, on: c)
        }) { [self] result in
            connectsInFlight -= 1
            switch result {
            case .success(let written):
                record("connect", requests: batch.count, operations: written.operations)
                for (item, outcome) in zip(batch, written.outcomes) { item.done(.success(outcome)) }
            case .failure(let error):
                for item in batch { item.done(.failure(error)) }
            }
            flushConnects()
        }
    }

    private func flushDisconnects() {
        guard !disconnects.isEmpty else { return }
        let batch = Array(disconnects.prefix(Self.maxBatch))
        disconnects.removeFirst(batch.count)
        disconnectsInFlight += 1
        let readBack = Set(batch.map(\.userID).filter(watched))
        database.submit("presence_disconnect", on: loop, { c in try PresenceStore.disconnect(batch, readBack: readBack, on: c) }) { [self] result in
            disconnectsInFlight -= 1
            if case .success(let written) = result { record("disconnect", requests: batch.count, operations: written.operations) }
            disconnected(batch, result.map(\.outcomes))
            flushDisconnects()
        }
    }

    private func record(_ kind: String, requests: Int, operations: Int) {
        batchesWritten += 1
        requestsWritten += requests
        self.operations += operations
        Counter(label: "chat_presence_batches_total", dimensions: [("kind", kind)]).increment()
        Counter(label: "chat_presence_batch_requests_total", dimensions: [("kind", kind)]).increment(by: requests)
        Counter(label: "chat_presence_db_operations_total", dimensions: [("kind", kind)]).increment(by: operations)
    }
}
