import Foundation
import Logging
import MongoStore
import ServiceLoop
import Testing

/// `make test` crashed on a loaded machine ("Attempted to read an unowned reference but object ... was
/// already destroyed"): a Database dropped right after it was made (a test's MongoProbe) had worker
/// threads that first ran after it was destroyed and read it through an unowned reference.
@Suite(.serialized) struct DatabaseLifecycleTests {
    @Test func aDatabaseDroppedAtOnceNeitherCrashesNorLeavesThreads() throws {
        let before = Self.threadCount()
        // No server is reached: the pool connects lazily, and shutdown() ends the workers.
        let uri = try MongoURI("mongodb://127.0.0.1:9/lifecycle")
        for _ in 0..<200 {
            let database = try Database(uri: uri, workers: 4, queueLimit: 1, logger: Logger(label: "lifecycle"))
            database.shutdown(timeout: 0)
        }
        let deadline = Date().addingTimeInterval(20)
        while Self.threadCount() > before + 2 && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(Self.threadCount() <= before + 2, "800 worker threads started; \(Self.threadCount() - before) are left")
    }

    @Test func queuedWorkFinishesOrFailsAtShutdown() throws {
        let database = try Database(uri: try MongoURI("mongodb://127.0.0.1:9/lifecycle?serverSelectionTimeoutMS=200"),
                                    workers: 1, queueLimit: 10, logger: Logger(label: "lifecycle"))
        // This test's thread is the service thread: completions come back to it through the inbox.
        let loop = ServiceLoop()
        loop.enter()
        var results = 0
        for _ in 0..<3 {
            database.submit("ping", on: loop, { _ in 1 }) { _ in
                loop.preconditionInLoop()
                results += 1
            }
        }
        database.shutdown(timeout: 5)
        let deadline = Date().addingTimeInterval(10)
        while results < 3 && Date() < deadline {
            loop.drain()
            Thread.sleep(forTimeInterval: 0.01)
        }
        #expect(results == 3, "every queued job gets its completion, on the service thread")
    }

    static func threadCount() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
    }
}
