import COpenSSL

/// A key that could not be generated, parsed, stored or used; `description` says which and why.
public struct KeyError: Error, Sendable, CustomStringConvertible {
    public let description: String

    init(_ problem: String) { description = problem }

    /// Adds OpenSSL's reason and empties its per-thread queue, which would otherwise mislead the next
    /// TLS call (libwebsockets, libmongoc) made on the same thread.
    static func openSSL(_ problem: String) -> KeyError {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0, let text = ERR_reason_error_string(code) else { return KeyError(problem) }
        return KeyError("\(problem): \(String(cString: text))")
    }
}
