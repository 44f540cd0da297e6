import ChatDomain
import Foundation

/// Serialised writes to stdout and stderr: JSON lines come from the loop thread and the main thread.
enum Output {
    private static let lock = NSLock()

    static func json(_ value: JSONValue) {
        write(value.text + "\n", to: stdout)
    }

    static func text(_ line: String) { write(line, to: stdout) }

    static func warn(_ message: String) { write("chat-client: \(message)\n", to: stderr) }

    /// Prints the one line and exits with status 1.
    static func fail(_ message: String) -> Never {
        warn(message)
        exit(1)
    }

    static func write(_ text: String, to stream: UnsafeMutablePointer<FILE>) {
        lock.lock()
        defer { lock.unlock() }
        fputs(text, stream)
        fflush(stream)
    }
}
