import CMongoC
import Foundation
import Logging

/// A MongoDB change stream read on its own thread: how instances hear each other's writes (presence
/// changes, messages). Resumes after errors from the last resume token; needs a replica set.
///
/// One stream over the database serves every route: the embedded database answers each open
/// stream's waiting `getMore` after every write to any collection, so each stream costs a round
/// trip per commit (three streams were as many round trips as a message batch's own).
public final class ChangeFeed: @unchecked Sendable {   // unchecked: `stopped` under `lock`; the rest is the feed thread's
    /// Changes of one collection that pass `match` (conditions on the change event), for `handler`.
    public struct Route: Sendable {
        public let collection: String
        public let match: BSONDocument
        public let handler: @Sendable (BSONDocument) -> Void
        public init(collection: String, match: BSONDocument, handler: @escaping @Sendable (BSONDocument) -> Void) {
            self.collection = collection
            self.match = match
            self.handler = handler
        }
    }

    private let database: Database
    private let routes: [String: Route]
    private let pipeline: [BSONDocument]
    private let logger: Logger
    private let lock = NSLock()
    private var stopped = false
    private var resumeToken: BSONDocument?
    /// Whether the current (or last) stream got past its first round trip.
    private var opened = false

    public init(database: Database, routes: [Route], logger: Logger) {
        self.database = database
        self.routes = Dictionary(routes.map { ($0.collection, $0) }) { first, _ in first }
        self.pipeline = [["$match": ["$or": .array(routes.map { route in
            .document(BSONDocument([("ns.coll", .string(route.collection))] + route.match.fields))
        })]]]
        self.logger = logger
    }

    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "change-feed"
        thread.start()
    }

    public func stop() { lock.lock(); stopped = true; lock.unlock() }
    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func run() {
        var backoff: TimeInterval = 0.5
        while !isStopped {
            let failure: String? = database.withConnection { connection in watch(connection) }
            if isStopped { break }
            if let failure {
                logger.warning("change stream interrupted, reopening", metadata: ["error": "\(failure)"])
                if failure.contains("resume") { resumeToken = nil }
            }
            // A stream that was open a while ago reopens fast; one that keeps failing backs off to 5 s.
            if opened { backoff = 0.5 }
            Thread.sleep(forTimeInterval: backoff)
            backoff = min(backoff * 2, 5)
        }
    }

    /// Reads until stopped or failed; returns the failure.
    private func watch(_ connection: MongoConnection) -> String? {
        var options: BSONDocument = ["fullDocument": .string("updateLookup"), "maxAwaitTimeMS": .int64(500)]
        if let resumeToken { options["resumeAfter"] = .document(resumeToken) }
        let pipelineDoc: BSONDocument = ["pipeline": .array(pipeline.map { .document($0) })]
        let stream: OpaquePointer = connection.withDatabase { db in
            pipelineDoc.withBSON { p in options.withBSON { o in mongoc_database_watch(db, p, o)! } }
        }
        defer { mongoc_change_stream_destroy(stream) }
        opened = false
        while !isStopped {
            var doc: OpaquePointer?
            if mongoc_change_stream_next(stream, &doc), let doc {
                let change = BSONDocument(bson: doc)
                if let token = mongoc_change_stream_get_resume_token(stream) { resumeToken = BSONDocument(bson: token) }
                if let coll = change["ns"]?.documentValue?["coll"]?.stringValue { routes[coll]?.handler(change) }
                continue
            }
            var error = bson_error_t()
            if mongoc_change_stream_error_document(stream, &error, nil) { return DatabaseError(error).description }
            if !opened { opened = true }
        }
        return nil
    }
}
