import ChatDomain
import CMongoC
import CMongoShim
import Foundation
import Synchronization

/// A client popped from the pool for one job on one worker thread.
public final class MongoConnection {
    let client: OpaquePointer
    public let databaseName: String
    let session: MongoSession?
    let ledger: SessionLedger?

    init(client: OpaquePointer, databaseName: String, session: MongoSession? = nil, ledger: SessionLedger? = nil) {
        self.client = client
        self.databaseName = databaseName
        self.session = session
        self.ledger = ledger
    }

    /// The database handle, for the length of `body`.
    func withDatabase<T>(_ body: (OpaquePointer) -> T) -> T {
        let db = mongoc_client_get_database(client, databaseName)!
        defer { mongoc_database_destroy(db) }
        return body(db)
    }

    public func collection(_ name: String) -> MongoCollection {
        MongoCollection(client: client, database: databaseName, name: name, session: session)
    }

    public func ping() throws(DatabaseError) {
        try adminCommand(["ping": .int32(1)])
    }

    /// Aborts the transactions of these sessions (ids as the driver sends them, `{id: UUID}`) and ends
    /// them: a crashed instance's open transactions stop blocking the documents they wrote.
    public func killSessions(_ ids: [BSONValue]) throws(DatabaseError) {
        guard !ids.isEmpty else { return }
        try adminCommand(["killSessions": .array(ids)])
    }

    private func adminCommand(_ command: BSONDocument) throws(DatabaseError) {
        var error = bson_error_t()
        let ok = command.withBSON { c in mongoc_client_command_simple(client, "admin", c, nil, nil, &error) }
        if !ok { throw DatabaseError(error) }
    }

    /// Runs `body` in a multi-document transaction, so that its writes commit together or not at all.
    /// Needs a replica set, as MongoDB transactions do.
    ///
    /// The one retry loop for transient failures: a write conflict with a concurrent transaction, and
    /// whatever `alsoRetry` accepts (a unique index refusing a racing writer), retry the whole body
    /// after a jittered backoff within `retry.budget`; past it, `DatabaseError.busy` (answered as
    /// retryable). `body` gets the attempt number (1 first).
    public func withTransaction<T>(retry: RetryPolicy = .standard, alsoRetry: (DatabaseError) -> Bool = { _ in false },
                                   _ body: (MongoConnection, Int) throws -> T) throws -> T {
        var error = bson_error_t()
        guard let handle = mongoc_client_start_session(client, nil, &error) else { throw DatabaseError(error) }
        defer { mongoc_client_session_destroy(handle) }
        ledger?.record(lsid: mongoc_client_session_get_lsid(handle), on: self)
        let inner = MongoConnection(client: client, databaseName: databaseName, session: MongoSession(handle: handle))
        let start = DispatchTime.now().uptimeNanoseconds
        var attempt = 0
        while true {
            attempt += 1
            guard mongoc_client_session_start_transaction(handle, nil, &error) else { throw DatabaseError(error) }
            do {
                let result = try body(inner, attempt)
                let reply = chat_bson_reply_new()!
                defer { chat_bson_reply_free(reply) }
                if mongoc_client_session_commit_transaction(handle, reply, &error) { return result }
                throw DatabaseError(error)
            } catch let failure as DatabaseError where failure.isTransactionConflict || alsoRetry(failure) {
                var ignored = bson_error_t()
                if mongoc_client_session_in_transaction(handle) { mongoc_client_session_abort_transaction(handle, &ignored) }
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                guard let wait = retry.delay(retry: attempt, elapsed: elapsed, random: Double.random(in: 0..<1)) else {
                    throw DatabaseError.busy("\(attempt) attempts in \(Int(elapsed * 1000)) ms, last: \(failure)")
                }
                if wait > 0 { usleep(UInt32(wait * 1e6)) }
                continue
            } catch {
                var ignored = bson_error_t()
                if mongoc_client_session_in_transaction(handle) { mongoc_client_session_abort_transaction(handle, &ignored) }
                throw error
            }
        }
    }

    public func withTransaction<T>(_ body: (MongoConnection) throws -> T) throws -> T {
        try withTransaction { c, _ in try body(c) }
    }
}

/// The server sessions (lsids) this process has used for transactions, written once each to its
/// `instances` record: when the process dies (kill -9), the survivors that sweep it kill those
/// sessions, which aborts its open transactions at once instead of when the database reaps them
/// (`transactionLifetimeLimitSeconds`, 60 s by default).
final class SessionLedger: Sendable {
    private let state = Mutex<(instanceID: String?, recorded: Set<[UInt8]>)>((nil, []))
    /// The record keeps the latest ones: the driver reuses a handful of sessions for its pool's life.
    static let kept = 64

    func recordSessions(asInstance id: String) {
        state.withLock { $0 = (id, []) }
    }

    /// The instance record was created again (swept while unreachable): record every session anew.
    func forgetRecorded() {
        state.withLock { $0.recorded.removeAll() }
    }

    func record(lsid: OpaquePointer?, on c: MongoConnection) {
        guard let lsid else { return }
        let doc = BSONDocument(bson: lsid)
        guard case .binary(_, let bytes)? = doc["id"] else { return }
        let (id, known) = state.withLock { ($0.instanceID, $0.recorded.contains(bytes)) }
        guard let id, !known else { return }
        // Outside the transaction; no record yet (before the first heartbeat): tried again next time.
        let result = try? c.collection(PresenceStore.instances).updateOne(["_id": .string(id)], [
            "$push": ["sessions": ["$each": .array([.document(doc)]), "$slice": .int32(Int32(-Self.kept))]],
        ])
        guard let result, result.matched > 0 else { return }
        state.withLock { state in
            if state.recorded.count > 4 * Self.kept { state.recorded.removeAll() }
            state.recorded.insert(bytes)
        }
    }
}

/// `mongoc_client_session_t`, owned by `withTransaction`.
final class MongoSession {
    let handle: OpaquePointer
    init(handle: OpaquePointer) { self.handle = handle }
}

