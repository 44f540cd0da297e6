import Foundation
import Logging
import MongoStore

/// Watches MongoDB from its own thread: pings it, creates the indexes once it answers, and keeps the
/// readiness state that `/readyz` reports. While the database is away it retries with backoff.
public final class DatabaseMonitor: @unchecked Sendable {
    public enum State: Equatable, Sendable {
        case connecting
        case ready
        case unavailable(String)
    }

    private let database: Database
    private let logger: Logger
    private let lock = NSLock()
    private var _state: State = .connecting
    private var stopped = false
    private let announce: (String) -> Void
    private var indexesCreated = false
    /// Runs (on the monitor thread) each time the database becomes reachable, after the indexes exist.
    var onReady: (() -> Void)?
    /// Runs (on the monitor thread) once, after the first attempt to reach the database, either way.
    var onFirstAttempt: (() -> Void)?

    private func firstAttemptDone() {
        let callback = onFirstAttempt
        onFirstAttempt = nil
        callback?()
    }

    public var state: State { lock.lock(); defer { lock.unlock() }; return _state }

    init(database: Database, logger: Logger, announce: @escaping (String) -> Void) {
        self.database = database
        self.logger = logger
        self.announce = announce
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "db-monitor"
        thread.start()
    }

    func stop() { lock.lock(); stopped = true; lock.unlock() }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func loop() {
        var backoff: TimeInterval = 0.5
        var everConnected = false
        while !isStopped {
            do {
                try database.withConnection { connection in
                    try connection.ping()
                    if !indexesCreated {
                        try Schema.ensureIndexes(on: connection)
                        indexesCreated = true
                    }
                }
                let wasReady = state == .ready
                set(.ready)
                if !wasReady {
                    if everConnected { logger.info("MongoDB reachable again", metadata: ["uri": "\(database.uri.masked)"]) } else {
                        announce("✅ MongoDB connected successfully")
                    }
                    everConnected = true
                    onReady?()
                }
                firstAttemptDone()
                backoff = 0.5
                sleep(seconds: 2)
            } catch {
                let reason = "\(error)"
                if state != .unavailable(reason) {
                    logger.error("MongoDB unavailable, retrying", metadata: ["uri": "\(database.uri.masked)", "error": "\(reason)"])
                }
                set(.unavailable(reason))
                firstAttemptDone()
                sleep(seconds: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func set(_ state: State) { lock.lock(); _state = state; lock.unlock() }

    private func sleep(seconds: TimeInterval) {
        let end = Date().addingTimeInterval(seconds)
        while !isStopped && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
    }
}
