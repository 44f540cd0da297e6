import CMongoC
import Foundation
import Logging
import Metrics
import ServiceLoop
import Synchronization

/// MongoDB behind a bounded pool of worker threads sharing one `mongoc_client_pool_t`. Every call
/// that can block (all of them) runs here, never on the socket service thread; `submit` is called on
/// the service thread and its completion runs there too (as swift-nio's `NIOThreadPool.runIfActive`).
/// The workers hold the Database: `shutdown()` ends them, and only then is it released.
public final class Database: @unchecked Sendable {   // unchecked: the job queue is guarded by `condition`
    public let uri: MongoURI
    public var name: String { uri.databaseName }
    private let pool: OpaquePointer
    private let queueLimit: Int
    private let condition = NSCondition()
    /// Taken jobs are cleared at once: a finished job's closure (and the session it captured) must not outlive it.
    private var jobs: [Job?] = []
    private var jobsHead = 0
    private var running = true
    private var busyWorkers = 0
    private let logger: Logger
    private let queueDepthGauge = Gauge(label: "chat_db_queue_depth")
    private let sessionLedger = SessionLedger()

    private struct Job {
        let operation: String
        let run: @Sendable (MongoConnection?) -> Void   // nil connection: the pool is shutting down
    }

    /// The driver's default handler prints its DEBUG lines too (one per failed heartbeat while the
    /// database is away); warnings and errors are kept, through the first pool's logger (JSON lines in
    /// production), and the monitor reports the outage itself.
    private static let quietDriverLog: Void = {
        mongoc_log_set_handler({ level, domain, message, _ in
            guard level.rawValue <= MONGOC_LOG_LEVEL_WARNING.rawValue, let domain, let message else { return }
            let text = "mongoc \(String(cString: domain)): \(String(cString: message))"
            if let logger = Database.driverLogger.withLock({ $0 }) {
                logger.log(level: level.rawValue <= MONGOC_LOG_LEVEL_ERROR.rawValue ? .error : .warning, "\(text)")
            } else {
                FileHandle.standardError.write(Data((text + "\n").utf8))
            }
        }, nil)
    }()
    /// The first pool's logger.
    private static let driverLogger = Mutex<Logger?>(nil)

    /// `serverSelectionTimeoutMS` defaults to 5 s here (the driver's 30 s would hold a webhook past
    /// Svix's 15 s deadline when the database is down) unless the URI sets it.
    public init(uri: MongoURI, workers: Int, queueLimit: Int, logger: Logger) throws(MongoURIError) {
        mongoc_init()
        Self.driverLogger.withLock { if $0 == nil { $0 = logger } }
        _ = Self.quietDriverLog
        self.uri = uri
        self.queueLimit = queueLimit
        self.logger = logger
        var error = bson_error_t()
        guard let cURI = mongoc_uri_new_with_error(uri.text, &error) else {
            throw MongoURIError(message: DatabaseError(error).plainMessage)
        }
        defer { mongoc_uri_destroy(cURI) }
        if !mongoc_uri_has_option(cURI, MONGOC_URI_SERVERSELECTIONTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(cURI, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000)
        }
        if !mongoc_uri_has_option(cURI, MONGOC_URI_CONNECTTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(cURI, MONGOC_URI_CONNECTTIMEOUTMS, 3000)
        }
        // The driver's default (300 s) would let a half-started server hold a worker for minutes.
        if !mongoc_uri_has_option(cURI, MONGOC_URI_SOCKETTIMEOUTMS) {
            mongoc_uri_set_option_as_int32(cURI, MONGOC_URI_SOCKETTIMEOUTMS, 10000)
        }
        if !mongoc_uri_has_option(cURI, MONGOC_URI_APPNAME) {
            mongoc_uri_set_option_as_utf8(cURI, MONGOC_URI_APPNAME, "chat-server")
        }
        pool = mongoc_client_pool_new(cURI)
        // Version 2 reports a duplicate key as a server error with code 11000.
        mongoc_client_pool_set_error_api(pool, 2)
        for i in 0..<max(1, workers) {
            // Strong, not unowned: a thread may first run after its creator dropped the Database (a
            // loaded machine), and reading an unowned reference to a destroyed object kills the process.
            // The Database lives until shutdown() lets its workers return.
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "db-worker-\(i)"
            thread.start()
        }
    }

    deinit { mongoc_client_pool_destroy(pool) }

    public var queueDepth: Int {
        condition.lock(); defer { condition.unlock() }
        return jobs.count - jobsHead
    }

    /// Queues `work` for a worker (from the service thread); `completion` runs on the service thread
    /// with its result, or at once with `overloaded` / `shuttingDown`.
    public func submit<T: Sendable>(_ operation: String, on loop: ServiceLoop,
                                    _ work: @escaping @Sendable (MongoConnection) throws -> T,
                                    completion: @escaping (Result<T, any Error>) -> Void) {
        let completion = ServiceBound(completion, loop: loop)
        enqueue(operation, work) { result in loop.post { completion.value(result) } }
    }

    /// Queues `work` for a worker; `completion` runs on that worker thread.
    private func enqueue<T: Sendable>(_ operation: String, _ work: @escaping @Sendable (MongoConnection) throws -> T,
                                     completion: @escaping @Sendable (Result<T, any Error>) -> Void) {
        condition.lock()
        guard running else { condition.unlock(); completion(.failure(DatabaseError.shuttingDown)); return }
        guard jobs.count - jobsHead < queueLimit else {
            condition.unlock()
            completion(.failure(DatabaseError.overloaded))
            return
        }
        let timer = Timer(label: "chat_db_operation_duration_seconds", dimensions: [("operation", operation)])
        jobs.append(Job(operation: operation) { connection in
            guard let connection else { completion(.failure(DatabaseError.shuttingDown)); return }
            let start = DispatchTime.now().uptimeNanoseconds
            let result = Result { try work(connection) }
            timer.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - start))
            completion(result)
        })
        queueDepthGauge.record(jobs.count - jobsHead)
        condition.signal()
        condition.unlock()
    }

    /// Runs `work` on the calling thread with a pooled client (for threads that may block: monitors,
    /// command-line tools, tests).
    public func withConnection<T>(_ work: (MongoConnection) throws -> T) rethrows -> T {
        let client = mongoc_client_pool_pop(pool)!
        defer { mongoc_client_pool_push(pool, client) }
        return try work(MongoConnection(client: client, databaseName: name, ledger: sessionLedger))
    }

    /// Writes the sessions this process's transactions use to the `instances` record `id`, so that
    /// the instances that sweep it after a crash can abort its open transactions (`killSessions`).
    public func recordSessions(asInstance id: String) { sessionLedger.recordSessions(asInstance: id) }

    /// The instance record was created again: its sessions are written anew.
    public func forgetRecordedSessions() { sessionLedger.forgetRecorded() }

    private func workerLoop() {
        while true {
            condition.lock()
            while running && jobsHead == jobs.count { condition.wait() }
            if jobsHead == jobs.count { condition.unlock(); return }   // stopped and drained
            let job = jobs[jobsHead]!
            jobs[jobsHead] = nil
            jobsHead += 1
            if jobsHead == jobs.count {
                jobs.removeAll(keepingCapacity: jobs.count <= 4096); jobsHead = 0
            } else if jobsHead > 1024 && jobsHead * 2 > jobs.count {
                jobs.removeFirst(jobsHead); jobsHead = 0
            }
            busyWorkers += 1
            queueDepthGauge.record(jobs.count - jobsHead)
            condition.unlock()

            withConnection { job.run($0) }

            condition.lock()
            busyWorkers -= 1
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Stops taking jobs, lets queued and running ones finish for up to `timeout`, then fails the rest.
    public func shutdown(timeout: TimeInterval) {
        condition.lock()
        running = false
        condition.broadcast()
        let deadline = Date().addingTimeInterval(timeout)
        while (jobsHead < jobs.count || busyWorkers > 0) && Date() < deadline {
            _ = condition.wait(until: min(deadline, Date().addingTimeInterval(0.1)))
        }
        let abandoned = jobs[jobsHead...]
        jobs.removeAll()
        jobsHead = 0
        condition.unlock()
        if !abandoned.isEmpty { logger.warning("shutdown: \(abandoned.count) database jobs not run") }
        for job in abandoned { job?.run(nil) }
    }
}
