import Foundation

/// A deliberately small HTTP/1.1 client over a loopback socket: tests control every byte sent
/// (no Content-Length, chunked bodies, oversize bodies) and read the raw answer.
public struct RawHTTP {
    public struct Response: CustomStringConvertible {
        public let status: Int
        public let headers: [String: String]
        public let body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
        public var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] ?? [:] }
        public var description: String { "\(status) \(text)" }
    }

    public let port: Int
    public init(port: Int) { self.port = port }

    public func get(_ path: String, headers: [(String, String)] = []) throws -> Response {
        try send(method: "GET", path: path, headers: headers, body: nil)
    }

    public func post(_ path: String, headers: [(String, String)] = [], body: [UInt8]) throws -> Response {
        try send(method: "POST", path: path, headers: headers + [("Content-Length", String(body.count))], body: body)
    }

    /// Sends exactly the given head and body; adds only Host and Connection: close.
    public func send(method: String, path: String, headers: [(String, String)], body: [UInt8]?, timeout: TimeInterval = 20) throws -> Response {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        head += "\r\n"
        return try exchange(Array(head.utf8) + (body ?? []), timeout: timeout)
    }

    public func exchange(_ request: [UInt8], timeout: TimeInterval = 20) throws -> Response {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestingError("socket() failed") }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { throw TestingError("cannot connect to 127.0.0.1:\(port)") }
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }   // the server may answer early (413) and close
            sent += n
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            data.append(contentsOf: buffer[0..<n])
            if let response = Self.parse(data), response.complete { return response.response }
        }
        guard let response = Self.parse(data) else { throw TestingError("no HTTP response (\(data.count) bytes)") }
        return response.response
    }

    static func parse(_ data: [UInt8]) -> (response: Response, complete: Bool)? {
        guard let end = data.firstRange(of: Array("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        guard let statusLine = head.first, statusLine.split(separator: " ").count >= 2,
              let status = Int(statusLine.split(separator: " ")[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let body = Array(data[end.upperBound...])
        let complete = headers["content-length"].flatMap(Int.init).map { body.count >= $0 } ?? false
        let length = headers["content-length"].flatMap(Int.init) ?? body.count
        return (Response(status: status, headers: headers, body: Array(body.prefix(length))), complete)
    }
}
