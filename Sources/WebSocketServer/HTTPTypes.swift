/// The request methods the server tells apart.
public enum HTTPMethod: String, Sendable {
    case get = "GET", post = "POST", put = "PUT", delete = "DELETE", patch = "PATCH"
    case options = "OPTIONS", head = "HEAD", other = "OTHER"
}

/// What the router sees of a request before its body: method, path and a header reader that is
/// only valid during the routing call (lws frees header storage afterwards).
public struct HTTPRequestHead {
    public let method: HTTPMethod
    public let path: String
    public let query: String?
    let readHeader: (String) -> String?

    public init(method: HTTPMethod, path: String, query: String?, readHeader: @escaping (String) -> String?) {
        self.method = method
        self.path = path
        self.query = query
        self.readHeader = readHeader
    }

    /// A header by case-insensitive name.
    public func header(_ name: String) -> String? { readHeader(name.lowercased()) }
}

/// A request whose body was read, with the headers the route asked to keep.
public struct HTTPRequest: Sendable {
    public let method: HTTPMethod
    public let path: String
    public let headers: [String: String]
    public let body: [UInt8]

    public init(method: HTTPMethod, path: String, headers: [String: String], body: [UInt8]) {
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? { headers[name.lowercased()] }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var headers: [(String, String)]
    public var body: [UInt8]
    /// Close the connection after answering (e.g. a body was refused unread).
    public var closeConnection: Bool
    /// A HEAD answer: the headers (Content-Length included) of `body`, without it.
    public var headersOnly = false

    public init(status: Int, contentType: String = "application/json", headers: [(String, String)] = [],
                body: [UInt8], closeConnection: Bool = false) {
        self.status = status
        self.contentType = contentType
        self.headers = headers
        self.body = body
        self.closeConnection = closeConnection
    }

    public init(status: Int, contentType: String = "application/json", text: String) {
        self.init(status: status, contentType: contentType, body: Array(text.utf8))
    }
}

/// Answers one HTTP exchange later, from the service thread (e.g. after a database job).
public struct HTTPResponder {
    let server: LwsServer
    let exchangeID: UInt64

    public func respond(_ response: HTTPResponse) { server.respond(exchangeID, response) }
}

/// What the router decides for a request.
public enum HTTPAction {
    /// Answer now.
    case respond(HTTPResponse)
    /// Read the body (up to `limit` bytes, else 413), keep the named headers, then call `handler`.
    case readBody(limit: Int, keepHeaders: [String], handler: (HTTPRequest, HTTPResponder) -> Void)
}
