import Foundation
import Logging
import MongoStore
import Synchronization

/// Watches MongoDB from its own thread: pings it, creates the indexes once it answers, and keeps the
/// readiness state that `/readyz` reports. While the database is away it retries with backoff.
public final class DatabaseMonitor: Sendable {
    public enum State: Equatable, Sendable {
        case connecting
        case ready
        case unavailable(String)
    }

    private let database: Database
    private let logger: Logger
    private let announce: @Sendable (String) -> Void
    private let shared = Mutex<(state: State, stopped: Bool)>((.connecting, false))

    public var state: State { shared.withLock { $0.state } }

    init(database: Database, logger: Logger, announce: @escaping @Sendable (String) -> Void) {
        self.database = database
        self.logger = logger
        self.announce = announce
    }

    /// Starts watching on its own thread. `onReady` runs there each time the database becomes
    /// reachable, after the indexes exist; `onFirstAttempt` once, after the first attempt either way.
    func start(onReady: @escaping @Sendable () -> Void, onFirstAttempt: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in loop(onReady: onReady, onFirstAttempt: onFirstAttempt) }
        thread.name = "db-monitor"
        thread.start()
    }

    func stop() { shared.withLock { $0.stopped = true } }

    private var isStopped: Bool { shared.withLock { $0.stopped } }

    private func loop(onReady: () -> Void, onFirstAttempt: () -> Void) {
        var backoff: TimeInterval = 0.5
        var everConnected = false
        var indexesCreated = false
        var firstAttempt = true
        func attempted() {
            if firstAttempt { firstAttempt = false; onFirstAttempt() }
        }
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
                    onReady()
                }
                attempted()
                backoff = 0.5
                sleep(seconds: 2)
            } catch {
                let reason = "\(error)"
                if state != .unavailable(reason) {
                    logger.error("MongoDB unavailable, retrying", metadata: ["uri": "\(database.uri.masked)", "error": "\(reason)"])
                }
                set(.unavailable(reason))
                attempted()
                sleep(seconds: backoff)
                backoff = min(backoff * 2, 5)
            }
        }
    }

    private func set(_ state: State) { shared.withLock { $0.state = state } }

    private func sleep(seconds: TimeInterval) {
        let end = Date().addingTimeInterval(seconds)
        while !isStopped && Date() < end { Thread.sleep(forTimeInterval: 0.1) }
    }
}
