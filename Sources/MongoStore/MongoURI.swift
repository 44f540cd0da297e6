import CMongoC
import Foundation

/// A checked MongoDB connection string.
public struct MongoURI: Sendable {
    public let text: String
    /// From the URI path; `test` when it has none, as the Node backend's Mongoose did.
    public let databaseName: String
    /// The URI with its password replaced, for log lines.
    public let masked: String

    public init(_ text: String) throws(MongoURIError) {
        // libmongoc takes `mongodb://a b` and then fails every connection: a URI has no raw spaces.
        if text.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            throw MongoURIError(message: "a connection string has no spaces or control characters (percent-encode them)")
        }
        mongoc_init()
        var error = bson_error_t()
        guard let uri = mongoc_uri_new_with_error(text, &error) else {
            throw MongoURIError(message: DatabaseError(error).plainMessage)
        }
        defer { mongoc_uri_destroy(uri) }
        self.text = text
        if let db = mongoc_uri_get_database(uri) { databaseName = String(cString: db) } else { databaseName = "test" }
        masked = Self.mask(text)
    }

    static func mask(_ text: String) -> String {
        // scheme://user:password@host -> scheme://user:****@host
        guard let schemeEnd = text.range(of: "://"),
              let at = text[schemeEnd.upperBound...].firstIndex(of: "@"),
              let colon = text[schemeEnd.upperBound..<at].firstIndex(of: ":") else { return text }
        return text[..<text.index(after: colon)] + "****" + text[at...]
    }
}

public struct MongoURIError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension DatabaseError {
    var plainMessage: String {
        switch self {
        case .failed(_, _, let m), .unavailable(let m), .duplicateKey(let m): return m
        default: return description
        }
    }
}
