import Foundation

/// The embedded MongoDB (SecantusDB) as a child process on a free loopback port, for tests that need
/// a database of their own (to stop and restart it). Most tests share the one `make test` starts.
public final class EmbeddedMongo: @unchecked Sendable {   // unchecked: a test starts, kills and restarts it from one thread at a time
    public let port: Int
    public let storagePath: String
    private var process: Process?

    public var uri: String { "mongodb://127.0.0.1:\(port)" }

    /// Starts a server; `storagePath` nil means a fresh temporary directory (kept across `restart()`).
    public init(storagePath: String? = nil) throws {
        port = try FreePort.next()
        self.storagePath = storagePath ?? FileManager.default.temporaryDirectory
            .appendingPathComponent("secantus-\(UUID().uuidString)").path
        try start()
    }

    public func start() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.executable)
        p.arguments = ["--host", "127.0.0.1", "--port", String(port), "--storage-path", storagePath, "--log-level", "WARNING"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        process = p
        guard FreePort.waitUntilListening(port: port, timeout: 60) else {
            p.terminate()
            throw TestingError("the embedded MongoDB did not start on port \(port)")
        }
    }

    /// Stops the server (SIGKILL: the database vanishes as in a crash).
    public func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
        _ = FreePort.waitUntilClosed(port: port, timeout: 10)
    }

    public func restart() throws {
        kill()
        try start()
    }

    deinit {
        kill()
        try? FileManager.default.removeItem(atPath: storagePath)
    }

    /// `SECANTUSD` (set by `make test`), else the repository's virtual environment.
    static var executable: String {
        if let path = ProcessInfo.processInfo.environment["SECANTUSD"] { return path }
        return Repository.root.appendingPathComponent(".venv/bin/secantusd-py").path
    }
}

public struct TestingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

enum Repository {
    /// The package root, found from this file's location.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}
