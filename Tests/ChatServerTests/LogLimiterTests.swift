import Foundation
import Logging
import Testing
import WebSocketServer

/// Collects what a logger writes (a real swift-log handler, only the destination is memory).
final class CapturedLines: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(Logger.Level, String, Logger.Metadata)] = []
    func append(_ line: (Logger.Level, String, Logger.Metadata)) { lock.lock(); lines.append(line); lock.unlock() }
    var all: [(Logger.Level, String, Logger.Metadata)] { lock.lock(); defer { lock.unlock() }; return lines }
}

struct CapturingHandler: LogHandler {
    let sink: CapturedLines
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        sink.append((event.level, event.message.description, event.metadata ?? [:]))
    }
}

@Suite struct LogLimiterTests {
    @Test func aBurstPerCategoryThenOneLineCountingWhatWasLeftOut() throws {
        let sink = CapturedLines()
        let logger = Logger(label: "test") { _ in CapturingHandler(sink: sink) }
        let limiter = LogLimiter(burst: 3, intervalSeconds: 1)
        for n in 0..<10 { limiter.log(logger, .warning, category: "a", "line \(n)") }
        limiter.log(logger, .warning, category: "b", "other kind")   // its own budget
        #expect(sink.all.map(\.1) == ["line 0", "line 1", "line 2", "other kind"])
        Thread.sleep(forTimeInterval: 1.1)
        limiter.log(logger, .warning, category: "a", "after the window")
        let last = try #require(sink.all.last)
        #expect(last.1 == "after the window" && last.2["suppressed_before"] == "7")
    }
}
