import Foundation
import Logging
import Synchronization

/// Bounds the log lines that anonymous clients can cause (refused upgrades, bad webhooks, lws' own
/// complaints about malformed requests): at most `burst` lines per category in each `interval`,
/// then one line saying how many were left out. Safe from any thread.
public final class LogLimiter: Sendable {
    private struct Window { var start: UInt64; var logged: Int; var dropped: Int }
    private let burst: Int
    private let interval: UInt64
    private let windows = Mutex<[String: Window]>([:])

    public init(burst: Int = 10, intervalSeconds: Int = 10) {
        self.burst = burst
        interval = UInt64(intervalSeconds) * 1_000_000_000
    }

    /// Logs `message` at `level` unless its category (a fixed string, never client text) is over its
    /// budget; the first line of a new window reports what the last one dropped.
    public func log(_ logger: Logger?, _ level: Logger.Level, category: String, _ message: @autoclosure () -> Logger.Message,
                    metadata: Logger.Metadata = [:]) {
        let now = DispatchTime.now().uptimeNanoseconds
        let (allowed, dropped) = windows.withLock { windows in
            var window = windows[category] ?? Window(start: now, logged: 0, dropped: 0)
            var dropped = 0
            if now - window.start >= interval {
                dropped = window.dropped
                window = Window(start: now, logged: 0, dropped: 0)
            }
            let allowed = window.logged < burst
            if allowed { window.logged += 1 } else { window.dropped += 1 }
            windows[category] = window
            return (allowed, dropped)
        }
        guard allowed, let logger else { return }
        var metadata = metadata
        if dropped > 0 { metadata["suppressed_before"] = "\(dropped)" }
        logger.log(level: level, message(), metadata: metadata)
    }
}
