import ChatDomain
import Foundation

/// Serialised writes to stdout and stderr: JSON lines come from the loop thread and the main thread.
enum Output {
    private static let lock = NSLock()

    static func json(_ value: JSONValue) {
        write(value.text + "\n", to: .standardOutput)
    }

    static func text(_ line: String) { write(line, to: .standardOutput) }

    static func warn(_ message: String) { write("chat-client: \(message)\n", to: .standardError) }

    /// Prints the one line and exits with status 1.
    static func fail(_ message: String) -> Never {
        warn(message)
        exit(1)
    }

    /// Through write(2), unbuffered (C's `stdout` is a global variable Swift 6 refuses to touch).
    static func write(_ text: String, to handle: FileHandle) {
        lock.lock()
        defer { lock.unlock() }
        handle.write(Data(text.utf8))
    }
}
