import CMongoC

/// Why a database operation failed, in the terms callers act on.
public enum DatabaseError: Error, Equatable, CustomStringConvertible {
    /// The server could not be reached or selected: retry later (HTTP 503, not ready).
    case unavailable(String)
    /// A unique index refused the write (server code 11000).
    case duplicateKey(String)
    /// The job queue is full: the database is too slow for the load.
    case overloaded
    /// The pool is shutting down.
    case shuttingDown
    /// A transient conflict (a write conflict, a racing writer) outlasted the retry budget: retry later.
    case busy(String)
    case failed(domain: UInt32, code: UInt32, message: String)

    public var description: String {
        switch self {
        case .unavailable(let m): return "database unavailable: \(m)"
        case .duplicateKey(let m): return "duplicate key: \(m)"
        case .overloaded: return "database job queue full"
        case .shuttingDown: return "database pool shutting down"
        case .busy(let m): return "database busy (conflicts past the retry budget): \(m)"
        case .failed(let d, let c, let m): return "database error \(d).\(c): \(m)"
        }
    }

    public var isUnavailable: Bool {
        switch self {
        case .unavailable, .overloaded, .shuttingDown, .busy: return true
        default: return false
        }
    }

    public var isBusy: Bool { if case .busy = self { return true } else { return false } }

    /// A write conflict between concurrent transactions (code 112): retrying the transaction resolves it.
    public var isTransactionConflict: Bool {
        if case .failed(_, let code, let message) = self {
            return code == 112 || code == 251 || message.contains("WriteConflict") || message.contains("TransientTransactionError")
        }
        return false
    }

    init(_ error: bson_error_t) {
        var e = error
        let message = withUnsafeBytes(of: &e.message) { raw in
            String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
        }
        let domain = error.domain, code = error.code
        if domain == MONGOC_ERROR_SERVER.rawValue || domain == MONGOC_ERROR_WRITE_CONCERN.rawValue {
            if code == 11000 { self = .duplicateKey(message); return }
        }
        if domain == MONGOC_ERROR_SERVER_SELECTION.rawValue || domain == MONGOC_ERROR_STREAM.rawValue
            || (domain == MONGOC_ERROR_CLIENT.rawValue && code == MONGOC_ERROR_CLIENT_AUTHENTICATE.rawValue) {
            self = .unavailable(message)
            return
        }
        self = .failed(domain: domain, code: code, message: message)
    }
}
