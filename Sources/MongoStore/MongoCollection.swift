import CMongoC
import CMongoShim
import Foundation

/// One collection on a client popped from the pool, for the duration of a job. Not thread-safe:
/// it lives and dies on one worker thread.
public final class MongoCollection {
    let handle: OpaquePointer
    let session: MongoSession?

    init(client: OpaquePointer, database: String, name: String, session: MongoSession?) {
        handle = mongoc_client_get_collection(client, database, name)
        self.session = session
    }

    deinit { mongoc_collection_destroy(handle) }

    public struct UpdateResult: Equatable, Sendable {
        public var matched: Int64
        public var modified: Int64
        public var upserted: Bool
    }

    public func insertOne(_ document: BSONDocument) throws(DatabaseError) {
        var error = bson_error_t()
        let ok = document.withBSON { doc in
            withOptions([:]) { opts in mongoc_collection_insert_one(handle, doc, opts, nil, &error) }
        }
        if !ok { throw DatabaseError(error) }
    }

    /// One round trip for many documents. `ordered: false` lets the others in when one is a duplicate.
    public func insertMany(_ documents: [BSONDocument], ordered: Bool = true) throws(DatabaseError) {
        guard !documents.isEmpty else { return }
        let bsons = documents.map { d -> OpaquePointer in let b = bson_new()!; d.append(to: b); return b }
        defer { bsons.forEach { bson_destroy($0) } }
        var pointers: [OpaquePointer?] = bsons
        var error = bson_error_t()
        let ok = withOptions(["ordered": .bool(ordered)]) { opts in
            mongoc_collection_insert_many(handle, &pointers, pointers.count, opts, nil, &error)
        }
        if !ok { throw DatabaseError(error) }
    }

    /// `insertMany(ordered: false)` where a document whose `_id` is already stored is no error (it was
    /// written before: a re-registration). Any other write error throws. Returns how many were new.
    @discardableResult
    public func insertManySkippingDuplicates(_ documents: [BSONDocument]) throws(DatabaseError) -> Int {
        guard !documents.isEmpty else { return 0 }
        let bsons = documents.map { d -> OpaquePointer in let b = bson_new()!; d.append(to: b); return b }
        defer { bsons.forEach { bson_destroy($0) } }
        var pointers: [OpaquePointer?] = bsons
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = withOptions(["ordered": .bool(false)]) { opts in
            mongoc_collection_insert_many(handle, &pointers, pointers.count, opts, reply, &error)
        }
        let r = BSONDocument(bson: reply)
        if !ok {
            let codes = (r["writeErrors"]?.arrayValue ?? []).map { $0.documentValue?["code"]?.int64Value }
            guard !codes.isEmpty, codes.allSatisfy({ $0 == 11000 }), r["writeConcernErrors"]?.arrayValue?.isEmpty ?? true else {
                throw DatabaseError(error)
            }
        }
        return Int(r["insertedCount"]?.int64Value ?? 0)
    }

    @discardableResult
    public func updateOne(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false) throws(DatabaseError) -> UpdateResult {
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = filter.withBSON { f in
            update.withBSON { u in
                withOptions(upsert ? ["upsert": .bool(true)] : [:]) { opts in
                    mongoc_collection_update_one(handle, f, u, opts, reply, &error)
                }
            }
        }
        if !ok { throw DatabaseError(error) }
        let r = BSONDocument(bson: reply)
        return UpdateResult(matched: r["matchedCount"]?.int64Value ?? 0, modified: r["modifiedCount"]?.int64Value ?? 0,
                            upserted: r["upsertedId"] != nil)
    }

    /// Several single-document updates in one round trip (unordered). Returns the matched count
    /// (with `upsert`, matched plus inserted).
    @discardableResult
    public func bulkUpdateOne(_ updates: [(filter: BSONDocument, update: BSONDocument)], upsert: Bool = false) throws(DatabaseError) -> Int64 {
        try bulkUpdate(updates.map { ($0.filter, $0.update, false) }, upsert: upsert)
    }

    /// Updates of one document or of every match, in one round trip (unordered). Returns the matched
    /// count (with `upsert`, matched plus inserted).
    @discardableResult
    public func bulkUpdate(_ updates: [(filter: BSONDocument, update: BSONDocument, many: Bool)], upsert: Bool = false) throws(DatabaseError) -> Int64 {
        guard !updates.isEmpty else { return 0 }
        // Per-operation options: no session here (the bulk's own options carry it).
        let options: BSONDocument = upsert ? ["upsert": .bool(true)] : [:]
        let r = try bulkWrite { bulk, error in
            updates.allSatisfy { filter, update, many in
                filter.withBSON { f in
                    update.withBSON { u in
                        options.withBSON { opts in
                            many ? mongoc_bulk_operation_update_many_with_opts(bulk, f, u, opts, &error)
                                 : mongoc_bulk_operation_update_one_with_opts(bulk, f, u, opts, &error)
                        }
                    }
                }
            }
        }
        return (r["nMatched"]?.int64Value ?? 0) + (r["nUpserted"]?.int64Value ?? 0)
    }

    /// One unordered bulk write, one round trip: `add` puts the statements in (false: one was refused,
    /// `error` says why). Returns the reply.
    private func bulkWrite(_ add: (OpaquePointer, inout bson_error_t) -> Bool) throws(DatabaseError) -> BSONDocument {
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let bulk: OpaquePointer = withOptions(["ordered": .bool(false)]) { opts in mongoc_collection_create_bulk_operation_with_opts(handle, opts)! }
        defer { mongoc_bulk_operation_destroy(bulk) }
        if !add(bulk, &error) { throw DatabaseError(error) }
        if mongoc_bulk_operation_execute(bulk, reply, &error) == 0 { throw DatabaseError(error) }
        return BSONDocument(bson: reply)
    }

    @discardableResult
    public func updateMany(_ filter: BSONDocument, _ update: BSONDocument) throws(DatabaseError) -> UpdateResult {
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = filter.withBSON { f in
            update.withBSON { u in withOptions([:]) { opts in mongoc_collection_update_many(handle, f, u, opts, reply, &error) } }
        }
        if !ok { throw DatabaseError(error) }
        let r = BSONDocument(bson: reply)
        return UpdateResult(matched: r["matchedCount"]?.int64Value ?? 0, modified: r["modifiedCount"]?.int64Value ?? 0, upserted: false)
    }

    /// Several deleteMany in one round trip (unordered). Returns the deleted count.
    @discardableResult
    public func bulkDeleteMany(_ filters: [BSONDocument]) throws(DatabaseError) -> Int64 {
        guard !filters.isEmpty else { return 0 }
        let r = try bulkWrite { bulk, error in
            filters.allSatisfy { filter in filter.withBSON { f in mongoc_bulk_operation_remove_many_with_opts(bulk, f, nil, &error) } }
        }
        return r["nRemoved"]?.int64Value ?? 0
    }

    @discardableResult
    public func deleteMany(_ filter: BSONDocument) throws(DatabaseError) -> Int64 {
        try delete(filter, one: false)
    }

    @discardableResult
    public func deleteOne(_ filter: BSONDocument) throws(DatabaseError) -> Int64 {
        try delete(filter, one: true)
    }

    private func delete(_ filter: BSONDocument, one: Bool) throws(DatabaseError) -> Int64 {
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = filter.withBSON { f in
            withOptions([:]) { opts in
                one ? mongoc_collection_delete_one(handle, f, opts, reply, &error)
                    : mongoc_collection_delete_many(handle, f, opts, reply, &error)
            }
        }
        if !ok { throw DatabaseError(error) }
        return BSONDocument(bson: reply)["deletedCount"]?.int64Value ?? 0
    }

    /// `hint` names the index by its key pattern. The embedded database (SecantusDB) plans a filter
    /// with fields beyond an index's as a collection scan unless told which index to use.
    public func find(_ filter: BSONDocument, sort: BSONDocument? = nil, limit: Int? = nil,
                     projection: BSONDocument? = nil, skip: Int? = nil, hint: BSONDocument? = nil) throws(DatabaseError) -> [BSONDocument] {
        var options: BSONDocument = [:]
        if let hint { options["hint"] = .document(hint) }
        if let sort { options["sort"] = .document(sort) }
        if let limit { options["limit"] = .int64(Int64(limit)) }
        if let skip { options["skip"] = .int64(Int64(skip)) }
        if let projection { options["projection"] = .document(projection) }
        var results: [BSONDocument] = []
        var error = bson_error_t()
        let failed: Bool = filter.withBSON { f in
            withOptions(options) { opts in
                let cursor = mongoc_collection_find_with_opts(handle, f, opts, nil)!
                defer { mongoc_cursor_destroy(cursor) }
                var doc: OpaquePointer?
                while mongoc_cursor_next(cursor, &doc) {
                    if let doc { results.append(BSONDocument(bson: doc)) }
                }
                return mongoc_cursor_error(cursor, &error)
            }
        }
        if failed { throw DatabaseError(error) }
        return results
    }

    public func findOne(_ filter: BSONDocument, projection: BSONDocument? = nil) throws(DatabaseError) -> BSONDocument? {
        try find(filter, limit: 1, projection: projection).first
    }

    public func count(_ filter: BSONDocument, hint: BSONDocument? = nil) throws(DatabaseError) -> Int64 {
        var error = bson_error_t()
        let options: BSONDocument = hint.map { ["hint": .document($0)] } ?? [:]
        let n = filter.withBSON { f in
            withOptions(options) { opts in mongoc_collection_count_documents(handle, f, opts, nil, nil, &error) }
        }
        if n < 0 { throw DatabaseError(error) }
        return n
    }

    /// findAndModify returning the document after the update (nil when nothing matched and no upsert).
    public func findOneAndUpdate(_ filter: BSONDocument, _ update: BSONDocument, upsert: Bool = false,
                                 returnNew: Bool = true) throws(DatabaseError) -> BSONDocument? {
        let opts = mongoc_find_and_modify_opts_new()!
        defer { mongoc_find_and_modify_opts_destroy(opts) }
        var flags = MONGOC_FIND_AND_MODIFY_NONE.rawValue
        if upsert { flags |= MONGOC_FIND_AND_MODIFY_UPSERT.rawValue }
        if returnNew { flags |= MONGOC_FIND_AND_MODIFY_RETURN_NEW.rawValue }
        mongoc_find_and_modify_opts_set_flags(opts, mongoc_find_and_modify_flags_t(rawValue: flags))
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = filter.withBSON { f in
            update.withBSON { u in
                mongoc_find_and_modify_opts_set_update(opts, u)
                return withOptions([:]) { extra in
                    mongoc_find_and_modify_opts_append(opts, extra)
                    return mongoc_collection_find_and_modify_with_opts(handle, f, opts, reply, &error)
                }
            }
        }
        if !ok { throw DatabaseError(error) }
        return BSONDocument(bson: reply)["value"]?.documentValue
    }

    /// Deletes one matching document and returns it (nil when none matched).
    public func findOneAndDelete(_ filter: BSONDocument) throws(DatabaseError) -> BSONDocument? {
        let opts = mongoc_find_and_modify_opts_new()!
        defer { mongoc_find_and_modify_opts_destroy(opts) }
        mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_REMOVE)
        let reply = chat_bson_reply_new()!
        defer { chat_bson_reply_free(reply) }
        var error = bson_error_t()
        let ok = filter.withBSON { f in
            withOptions([:]) { extra in
                mongoc_find_and_modify_opts_append(opts, extra)
                return mongoc_collection_find_and_modify_with_opts(handle, f, opts, reply, &error)
            }
        }
        if !ok { throw DatabaseError(error) }
        return BSONDocument(bson: reply)["value"]?.documentValue
    }

    /// Creates indexes; an index that already exists with the same keys and options is a no-op.
    public func createIndexes(_ indexes: [BSONDocument]) throws(DatabaseError) {
        let name = String(cString: mongoc_collection_get_name(handle))
        let command: BSONDocument = ["createIndexes": .string(name), "indexes": .array(indexes.map { .document($0) })]
        var error = bson_error_t()
        let ok = command.withBSON { c in mongoc_collection_write_command_with_opts(handle, c, nil, nil, &error) }
        if !ok { throw DatabaseError(error) }
    }

    /// Builds the options document, adding the session id when running inside a transaction.
    private func withOptions<R>(_ options: BSONDocument, _ body: (OpaquePointer) -> R) -> R {
        options.withBSON { opts in
            if let session { var e = bson_error_t(); mongoc_client_session_append(session.handle, opts, &e) }
            return body(opts)
        }
    }
}
