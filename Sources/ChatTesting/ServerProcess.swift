import Foundation

/// A real `chat-server` process on a kernel-chosen port, configured through its environment as a
/// deployment would be. Tests talk to it over loopback and read what it printed.
public final class ServerProcess: @unchecked Sendable {   // unchecked: the output lines under `lock`; `port` set once in init
    public private(set) var port: Int = 0
    public let environment: [String: String]
    private let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var errorLines: [String] = []
    private var partial: [String: String] = [:]
    private var closedStreams = 0

    /// The webhook secret every test server gets unless the test overrides it.
    public static let webhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    /// Starts a server with `environment` on top of test defaults; waits for its banner.
    public init(environment overrides: [String: String] = [:], mongoURI: String? = nil,
                arguments: [String] = [], waitForBanner: Bool = true) throws {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CLERK_") && $0.key != "MONGODB_URI" }
        env["NODE_ENV"] = "test"
        env["PORT"] = "0"
        env["HOST"] = "127.0.0.1"
        env["MONGODB_URI"] = try mongoURI ?? TestDatabase.freshURI()
        env["CLERK_WEBHOOK_SECRET"] = Self.webhookSecret
        env["SHUTDOWN_GRACE_SECONDS"] = "5"
        // libmongoc creates /dev/shm/mongoc-<pid> when loaded and warns on stderr when a killed
        // process with the same pid left one behind: an extra line the start-up tests would count.
        env["MONGOC_DISABLE_SHM"] = "1"
        for (key, value) in overrides { env[key] = value.isEmpty ? nil : value }
        environment = env
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments.isEmpty ? ["serve", "--env-file", "/nonexistent"] : arguments
        process.environment = env
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        capture(out, stream: "out")
        capture(err, stream: "err")
        do { try process.run() } catch {
            // The readers end once the write ends are closed.
            try? out.fileHandleForWriting.close()
            try? err.fileHandleForWriting.close()
            throw error
        }
        if waitForBanner {
            guard let line = waitForLine(containing: "Server running on port", timeout: 30),
                  let number = line.split(separator: " ").last.flatMap({ Int($0) }) else {
                process.terminate()
                throw TestingError("chat-server did not start:\n" + output.joined(separator: "\n"))
            }
            port = number
        }
    }

    /// `CHAT_SERVER_BIN` (set by `make test`), else the debug build.
    static var executable: String {
        ProcessInfo.processInfo.environment["CHAT_SERVER_BIN"]
            ?? Repository.root.appendingPathComponent(".build/debug/chat-server").path
    }

    public var http: RawHTTP { RawHTTP(port: port) }
    public var isRunning: Bool { process.isRunning }
    public var pid: Int32 { process.processIdentifier }

    /// Everything printed so far, stdout and stderr interleaved by line.
    public var output: [String] { lock.lock(); defer { lock.unlock() }; return lines }

    /// What it printed to stderr so far, by line.
    public var errorOutput: [String] { lock.lock(); defer { lock.unlock() }; return errorLines }

    public func waitForLine(containing text: String, timeout: TimeInterval) -> String? {
        waitForLine(timeout: timeout) { $0.contains(text) }
    }

    /// The first line that matches, waiting for it: output arrives through a pipe, so a line the server
    /// wrote before answering a request may be read after the answer.
    public func waitForLine(timeout: TimeInterval, where matches: (String) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let line = output.first(where: matches) { return line }
            if !process.isRunning { _ = waitForExit(timeout: 0); return output.first(where: matches) }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return nil
    }

    /// Waits for the process to exit by itself; nil on timeout.
    public func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { return nil }
        // Everything it printed is read once both pipes reached end of file (a loaded machine may
        // take a while to run the readers).
        let drained = Date().addingTimeInterval(10)
        while Date() < drained && { lock.lock(); defer { lock.unlock() }; return closedStreams < 2 }() {
            Thread.sleep(forTimeInterval: 0.01)
        }
        return process.terminationStatus
    }

    /// SIGTERM, then the exit code (nil if it did not exit within `timeout`).
    @discardableResult
    public func terminate(timeout: TimeInterval = 15) -> Int32? {
        guard process.isRunning else { return process.terminationStatus }
        Foundation.kill(process.processIdentifier, SIGTERM)
        return waitForExit(timeout: timeout)
    }

    /// SIGKILL: the instance dies without cleaning up.
    public func kill() {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { kill() }

    /// One reader thread per pipe, blocking in read(2) until end of file: no dispatch source to be
    /// scheduled late on a loaded machine, and end of file is seen exactly once.
    private func capture(_ pipe: Pipe, stream: String) {
        let handle = pipe.fileHandleForReading   // held by the thread, so the descriptor stays open
        let thread = Thread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let count = buffer.withUnsafeMutableBytes { read(handle.fileDescriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard let self else { if count <= 0 { return } else { continue } }
                self.lock.lock()
                if count <= 0 {
                    if let rest = self.partial[stream], !rest.isEmpty {   // a last line without a newline
                        self.lines.append(rest)
                        if stream == "err" { self.errorLines.append(rest) }
                    }
                    self.partial[stream] = nil
                    self.closedStreams += 1
                    self.lock.unlock()
                    return
                }
                var text = (self.partial[stream] ?? "") + String(decoding: buffer[..<count], as: UTF8.self)
                while let newline = text.firstIndex(of: "\n") {
                    self.lines.append(String(text[..<newline]))
                    if stream == "err" { self.errorLines.append(String(text[..<newline])) }
                    text = String(text[text.index(after: newline)...])
                }
                self.partial[stream] = text
                self.lock.unlock()
            }
        }
        thread.name = "server-\(stream)"
        thread.start()
    }
}
