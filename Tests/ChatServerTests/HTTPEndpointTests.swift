import ChatTesting
import Foundation
import Testing

/// The HTTP basics over real loopback sockets against a real server process and database.
@Suite struct HTTPEndpointTests {
    @Test func healthReadinessAndMetrics() throws {
        let server = try ServerProcess()
        #expect(try server.http.get("/healthz").status == 200)
        // Generous: a loaded machine can take long to answer the first ping (the wait ends when it does).
        let ready = try MongoProbe(uri: server.environment["MONGODB_URI"]!).eventually(timeout: 60, { try server.http.get("/readyz") }) { $0.status == 200 }
        #expect(ready.status == 200)
        #expect(ready.json["status"] as? String == "ready")
        let metrics = try server.http.get("/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        #expect(metrics.text.contains("chat_http_requests_total"))
        #expect(metrics.text.contains(#"route="/healthz""#))
        #expect(metrics.text.contains("chat_db_operation_duration_seconds") || metrics.text.contains("chat_db_queue_depth"))
    }

    @Test func unknownPathIs404WithAJSONError() throws {
        let server = try ServerProcess()
        let response = try server.http.get("/nope")
        #expect(response.status == 404)
        #expect(response.headers["content-type"]?.contains("application/json") == true)
        #expect(response.json["error"] as? String == "not found")
    }

    @Test func wrongMethodIs405() throws {
        let server = try ServerProcess()
        #expect(try server.http.post("/healthz", body: []).status == 405)
        let get = try server.http.get("/api/webhooks/clerk")
        #expect(get.status == 405)
        #expect(get.headers["allow"] == "POST")
    }

    @Test func keepAliveServesSeveralRequestsOnOneConnection() throws {
        let server = try ServerProcess()
        let two = Array("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8)
        let fd = try rawConnect(server.port)
        defer { close(fd) }
        _ = two.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        var data = [UInt8](), buffer = [UInt8](repeating: 0, count: 4096)
        while true { let n = recv(fd, &buffer, buffer.count, 0); if n <= 0 { break }; data += buffer[0..<n] }
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains("HTTP/1.1 200"))
        #expect(text.contains("HTTP/1.1 404"))
    }

    @Test func sigtermExitsZero() throws {
        let server = try ServerProcess()
        #expect(server.terminate() == 0)
    }

    @Test func developmentBannerAndMongoMessage() throws {
        let server = try ServerProcess(environment: ["NODE_ENV": "development"])
        #expect(server.waitForLine(containing: "✅ MongoDB connected successfully", timeout: 60) != nil)
        #expect(server.waitForLine(containing: "Environment: development", timeout: 10) != nil)
        #expect(server.output.contains { $0.contains("CLERK_WEBHOOK_SECRET") } == false)   // set by the harness
    }
}

/// /readyz follows the database: down within 15 s, back without restarting the server.
@Suite struct ReadinessTests {
    @Test func readinessFollowsTheDatabase() throws {
        let mongo = try EmbeddedMongo()
        let server = try ServerProcess(mongoURI: mongo.uri + "/ready")
        let wait = { (status: Int, seconds: TimeInterval) -> Int in
            let deadline = Date().addingTimeInterval(seconds)
            var last = 0
            while Date() < deadline {
                last = (try? server.http.get("/readyz").status) ?? -1
                if last == status { return last }
                Thread.sleep(forTimeInterval: 0.25)
            }
            return last
        }
        #expect(wait(200, 60) == 200)   // a fresh embedded database can be slow to serve on a loaded machine
        mongo.kill()
        let started = Date()
        #expect(wait(503, 15) == 503)
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(try server.http.get("/healthz").status == 200)   // the process stays up and serving
        #expect(server.waitForLine(timeout: 10) { $0.contains("MongoDB unavailable") && $0.contains("127.0.0.1:\(mongo.port)") } != nil)
        try mongo.start()
        #expect(wait(200, 60) == 200)
        #expect(server.isRunning)
    }

    @Test func unreachableAtStartStillServesHealthAndReportsNotReady() throws {
        let port = try FreePort.next()
        let server = try ServerProcess(mongoURI: "mongodb://app:hunter2@127.0.0.1:\(port)/chat")
        #expect(try server.http.get("/healthz").status == 200)
        let ready = try server.http.get("/readyz")
        #expect(ready.status == 503)
        #expect(server.waitForLine(containing: "MongoDB unavailable", timeout: 15) != nil)
        #expect(!server.output.joined().contains("hunter2"))
        #expect(server.output.contains { $0.contains("app:****@127.0.0.1") })
    }
}

func rawConnect(_ port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = UInt16(port).bigEndian
    let ok = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard ok else { throw TestingError("connect failed") }
    return fd
}
