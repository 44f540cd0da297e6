import Foundation
import MongoStore
import Logging
import Synchronization

/// The database integration tests share: the embedded MongoDB `make test` started
/// (`CHAT_TEST_MONGODB_URI`), else one started on first use. Each test gets its own database name.
public enum TestDatabase {
    private static let fallback = Mutex<EmbeddedMongo?>(nil)

    public static func baseURI() throws -> String {
        if let uri = ProcessInfo.processInfo.environment["CHAT_TEST_MONGODB_URI"] { return uri }
        return try fallback.withLock { fallback in
            if let running = fallback { return running.uri }
            let started = try EmbeddedMongo()
            fallback = started
            // A static is never deinitialised: stop the database when the test process exits.
            atexit { TestDatabase.stopFallback() }
            return started.uri
        }
    }

    private static func stopFallback() {
        fallback.withLock { $0 = nil }
    }

    /// A URI naming a database no other test uses.
    public static func freshURI() throws -> String {
        try "\(baseURI())/t_\(UUID().uuidString.prefix(12).replacingOccurrences(of: "-", with: ""))"
    }
}

/// Reads and writes a test's database directly over the wire (through the project's libmongoc adapter).
public final class MongoProbe: Sendable {
    public let database: Database

    public init(uri: String) throws {
        database = try Database(uri: try MongoURI(uri), workers: 1, queueLimit: 100, logger: Logger(label: "probe"))
    }

    // Its worker thread holds the Database until shut down.
    deinit { database.shutdown(timeout: 1) }

    public func find(_ collection: String, _ filter: BSONDocument = [:]) throws -> [BSONDocument] {
        try database.withConnection { try $0.collection(collection).find(filter) }
    }

    public func findOne(_ collection: String, _ filter: BSONDocument) throws -> BSONDocument? {
        try find(collection, filter).first
    }

    public func count(_ collection: String, _ filter: BSONDocument = [:]) throws -> Int64 {
        try database.withConnection { try $0.collection(collection).count(filter) }
    }

    /// Polls until `condition` holds on what `read` returns, or the timeout passes; returns the last read.
    @discardableResult
    public func eventually<T>(timeout: TimeInterval = 10, _ read: () throws -> T, until condition: (T) -> Bool) rethrows -> T {
        let deadline = Date().addingTimeInterval(timeout)
        var value = try read()
        while !condition(value) && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            value = try read()
        }
        return value
    }
}
