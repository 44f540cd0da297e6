import CMongoC
import CMongoShim
import Foundation

/// A client popped from the pool for one job on one worker thread.
public final class MongoConnection {
    let client: OpaquePointer
    public let databaseName: String
    let session: MongoSession?

    init(client: OpaquePointer, databaseName: String, session: MongoSession? = nil) {
        self.client = client
        self.databaseName = databaseName
        self.session = session
    }

    public func collection(_ name: String) -> MongoCollection {
        MongoCollection(client: client, database: databaseName, name: name, session: session)
    }

    public func ping() throws(DatabaseError) {
        var error = bson_error_t()
        let command: BSONDocument = ["ping": .int32(1)]
        let ok = command.withBSON { c in mongoc_client_command_simple(client, "admin", c, nil, nil, &error) }
        if !ok { throw DatabaseError(error) }
    }

    /// Runs `body` in a multi-document transaction, so that its writes commit together or not at all.
    /// A write conflict with a concurrent transaction retries the whole body (a few times).
    /// Needs a replica set, as MongoDB transactions do.
    public func withTransaction<T>(_ body: (MongoConnection) throws -> T) throws -> T {
        var error = bson_error_t()
        guard let handle = mongoc_client_start_session(client, nil, &error) else { throw DatabaseError(error) }
        defer { mongoc_client_session_destroy(handle) }
        let inner = MongoConnection(client: client, databaseName: databaseName, session: MongoSession(handle: handle))
        var attempt = 0
        while true {
            attempt += 1
            guard mongoc_client_session_start_transaction(handle, nil, &error) else { throw DatabaseError(error) }
            do {
                let result = try body(inner)
                let reply = chat_bson_reply_new()!
                defer { chat_bson_reply_free(reply) }
                if mongoc_client_session_commit_transaction(handle, reply, &error) { return result }
                throw DatabaseError(error)
            } catch let failure as DatabaseError where failure.isTransactionConflict && attempt < 5 {
                var ignored = bson_error_t()
                if mongoc_client_session_in_transaction(handle) { mongoc_client_session_abort_transaction(handle, &ignored) }
                usleep(UInt32(1000 * attempt))
                continue
            } catch {
                var ignored = bson_error_t()
                if mongoc_client_session_in_transaction(handle) { mongoc_client_session_abort_transaction(handle, &ignored) }
                throw error
            }
        }
    }
}

/// `mongoc_client_session_t`, owned by `withTransaction`.
final class MongoSession {
    let handle: OpaquePointer
    init(handle: OpaquePointer) { self.handle = handle }
}

