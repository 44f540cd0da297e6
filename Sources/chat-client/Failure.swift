import Foundation

/// An error for the person at the terminal: printed as one `chat-client: ...` line, exit status 1.
struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
