import Foundation

/// Lines to stdout through write(2), unbuffered: a pipe (a test, a log file) sees each at once.
/// (C's `stdout` is a global variable Swift 6 refuses to touch.)
enum Console {
    static func print(_ text: String, terminator: String = "\n") {
        FileHandle.standardOutput.write(Data((text + terminator).utf8))
    }
}
