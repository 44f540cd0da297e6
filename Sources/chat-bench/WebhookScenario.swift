import ArgumentParser
import ClerkAuth
import Foundation
import Glibc

/// Signed Clerk deliveries (user.created then user.updated per user) at increasing concurrency.
struct Webhook: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Signed user.created/user.updated deliveries to /api/webhooks/clerk at each concurrency: applied/s and latency.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Concurrent keep-alive connections, one level after another (comma separated).")
    var concurrency: String = "1,4,16"
    @Option(help: "Deliveries per level (half user.created, half user.updated).")
    var count: Int = 1000
    @Option(help: "The server's CLERK_WEBHOOK_SECRET (whsec_...); the first of a list is used.")
    var webhookSecret: String

    func run() throws {
        guard let first = webhookSecret.split(whereSeparator: { $0 == "," || $0 == " " }).first else {
            throw ValidationError("--webhook-secret is empty")
        }
        let secret = try WebhookSecret(parsing: String(first))
        let levels = concurrency.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
        guard !levels.isEmpty, count >= 2 else { throw ValidationError("--concurrency needs positive numbers, --count at least 2") }
        let ws = try common.wsURL
        let host = ws.host ?? "127.0.0.1"
        let port = UInt16(ws.port ?? 80)
        let run = common.run

        var levelResults: [[String: Any]] = []
        var lines: [String] = []
        var best: (level: Int, perSecond: Double) = (0, 0)
        var cpuAtBest: [String: Double] = [:]
        for level in levels {
            let outcome = runLevel(level, secret: secret, host: host, port: port, tag: "\(run)_c\(level)")
            let perSecond = Double(outcome.applied) / max(outcome.seconds, 1e-9)
            Console.print("concurrency \(level): \(outcome.applied) applied of \(outcome.sent) in \(fmt(outcome.seconds, 2)) s = \(fmtInt(perSecond))/s; \(outcome.latency.text); cpu \(CPUMeter.text(outcome.cpu))")
            levelResults.append(["concurrency": level, "sent": outcome.sent, "applied": outcome.applied, "statuses": outcome.statuses,
                                 "transport_errors": outcome.transportErrors, "seconds": Latency.round(outcome.seconds),
                                 "applied_per_s": Latency.round(perSecond), "latency": outcome.latency.json, "cpu_percent": outcome.cpu])
            lines.append("c=\(level): \(fmtInt(perSecond))/s, p99 \(outcome.latency.json["p99_ms"] ?? "-") ms (cpu \(CPUMeter.text(outcome.cpu)))")
            if perSecond > best.perSecond { best = (level, perSecond); cpuAtBest = outcome.cpu }
        }
        var report = ScenarioReport(scenario: "webhook")
        report.parameters = ["concurrency": levels, "count_per_level": count, "events": ["user.created", "user.updated"], "keep_alive": true]
        report.results = ["levels": levelResults, "best_applied_per_s": Latency.round(best.perSecond), "best_concurrency": best.level]
        report.parametersText = "\(count) signed deliveries per level (user.created + user.updated per user), keep-alive, concurrency \(levels.map(String.init).joined(separator: "/"))"
        report.resultsText = lines.joined(separator: "; ")
        report.target = "report applied/s and where the limit is"
        let server = cpuAtBest["server"] ?? 0
        let db = cpuAtBest["db"] ?? 0
        let machine = cpuAtBest["host"] ?? 0
        let limit: String
        // SecantusDB is Python: one core is its ceiling.
        if db >= 70 && db >= server { limit = "the database process (\(Int(db))% of a core)" }
        else if server >= 85 { limit = "chat-server (\(Int(server))% CPU)" }
        else if machine >= 90 { limit = "the machine's CPUs (\(Int(machine))% busy, other processes included)" }
        else { limit = "no process saturated (server \(Int(server))%, db \(Int(db))%): latency-bound" }
        report.verdict = "best \(fmtInt(best.perSecond)) applied/s at c=\(best.level); limit: \(limit)"
        let failures = levelResults.reduce(0) { $0 + (($1["sent"] as? Int ?? 0) - ($1["applied"] as? Int ?? 0)) }
        if failures > 0 { report.notes.append("\(failures) deliveries not applied: \(levelResults.map { "\($0["statuses"] ?? "")" }.joined(separator: " "))") }
        report.emit(jsonOut: common.jsonOut)
    }

    struct LevelOutcome {
        var sent = 0
        var applied = 0
        var statuses: [String: Int] = [:]
        var transportErrors = 0
        var latency = Latency()
        var seconds = 0.0
        var cpu: [String: Double] = [:]
    }

    private func runLevel(_ level: Int, secret: WebhookSecret, host: String, port: UInt16, tag: String) -> LevelOutcome {
        final class Shared: @unchecked Sendable {   // unchecked: `total` under `lock`
            let lock = NSLock()
            var total = LevelOutcome()
        }
        let shared = Shared()
        let usersTotal = count / 2
        let group = DispatchGroup()
        let cpu = CPUMeter(serverPid: common.serverPid, dbPid: common.dbPid)
        cpu.start()
        let start = monoNow()
        for worker in 0..<level {
            group.enter()
            let thread = Thread {
                var local = LevelOutcome()
                let http = HTTPConnection(host: host, port: port)
                var u = worker
                while u < usersTotal {
                    let userID = "user_bench_\(tag)_\(u)"
                    for type in ["user.created", "user.updated"] {
                        let body = Self.event(type: type, userID: userID, n: u)
                        let id = "msg_bench_\(tag)_\(u)_\(type == "user.created" ? "c" : "u")"
                        let timestamp = Int(Date().timeIntervalSince1970)
                        let signature = WebhookVerifier.sign(secret: secret, id: id, timestamp: timestamp, body: body)
                        let t0 = monoNow()
                        local.sent += 1
                        do {
                            let (status, answer) = try http.post(path: "/api/webhooks/clerk", headers: [
                                ("Content-Type", "application/json"), ("svix-id", id), ("svix-timestamp", String(timestamp)),
                                ("svix-signature", signature),
                            ], body: body)
                            local.latency.record(from: t0, to: monoNow())
                            let outcome = ((try? JSONSerialization.jsonObject(with: Data(answer))) as? [String: Any])?["status"] as? String
                            let key = "\(status) \(outcome ?? "-")"
                            local.statuses[key, default: 0] += 1
                            if status == 200 && outcome == "applied" { local.applied += 1 }
                        } catch let failure as HTTPConnection.Failure {
                            local.transportErrors += 1
                            local.statuses[failure.message, default: 0] += 1
                            if failure.message == "timeout" { local.latency.record(from: t0, to: monoNow()) }
                        } catch {
                            local.transportErrors += 1
                        }
                    }
                    u += level
                }
                http.close()
                shared.lock.lock()
                shared.total.sent += local.sent
                shared.total.applied += local.applied
                shared.total.transportErrors += local.transportErrors
                shared.total.latency.add(local.latency)
                for (k, v) in local.statuses { shared.total.statuses[k, default: 0] += v }
                shared.lock.unlock()
                group.leave()
            }
            thread.start()
        }
        group.wait()
        var total = shared.total
        total.seconds = seconds(monoNow() - start)
        total.cpu = cpu.stop()
        return total
    }

    static func event(type: String, userID: String, n: Int) -> [UInt8] {
        let nowMs = Int64(Date().timeIntervalSince1970 * 1000)
        let created = type == "user.created"
        let emailID = "idn_bench_\(n)"
        let data: [String: Any] = [
            "id": userID, "object": "user", "username": created ? "bench\(n)" : "bench\(n)_renamed",
            "first_name": "Bench", "last_name": created ? "User" : "Renamed", "image_url": "https://img.clerk.com/bench",
            "primary_email_address_id": emailID,
            "email_addresses": [["id": emailID, "object": "email_address", "email_address": "bench\(n)@example.com"]],
            "created_at": nowMs - 1000, "updated_at": created ? nowMs - 1000 : nowMs,
        ]
        let event: [String: Any] = ["type": type, "object": "event", "timestamp": nowMs, "data": data, "instance_id": "ins_bench"]
        return Array((try? JSONSerialization.data(withJSONObject: event, options: [.sortedKeys])) ?? Data())
    }
}

/// A minimal HTTP/1.1 client over one POSIX socket, kept alive between requests.
final class HTTPConnection {
    struct Failure: Error { let message: String }
    static let timeoutSeconds = 30

    private let host: String
    private let port: UInt16
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []

    init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    deinit { close() }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        buffer.removeAll()
    }

    private func open() throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw Failure(message: "socket: \(errno)") }
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A response that does not come within the timeout is counted as a transport error, not waited for.
        var wait = timeval(tv_sec: Int(HTTPConnection.timeoutSeconds), tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &wait, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            Glibc.close(s)
            throw Failure(message: "not an IPv4 address: \(host)")
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { Glibc.close(s); throw Failure(message: "connect: \(errno)") }
        fd = s
        buffer.removeAll()
    }

    /// POSTs and returns the status and body. A kept-alive connection the server closed is reopened once.
    func post(path: String, headers: [(String, String)], body: [UInt8]) throws -> (Int, [UInt8]) {
        try request("POST", path: path, headers: headers, body: body)
    }

    func get(path: String) throws -> (Int, [UInt8]) { try request("GET", path: path, headers: [], body: []) }

    private func request(_ method: String, path: String, headers: [(String, String)], body: [UInt8]) throws -> (Int, [UInt8]) {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nContent-Length: \(body.count)\r\n"
        for (k, v) in headers { head += "\(k): \(v)\r\n" }
        head += "\r\n"
        let request = Array(head.utf8) + body
        for attempt in 0..<2 {
            let reused = fd >= 0
            if !reused { try open() }
            do {
                try write(request)
                return try readResponse()
            } catch let failure as Failure {
                close()
                // Only a kept-alive connection the server had closed is retried (never a timeout).
                if !reused || attempt == 1 || (failure.message != "connection closed" && !failure.message.hasPrefix("send:")) { throw failure }
            }
        }
        throw Failure(message: "unreachable")
    }

    private func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; throw Failure(message: "send: \(errno)") }
            offset += n
        }
    }

    private func fill() throws {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure(message: "timeout") }
                throw Failure(message: "recv: \(errno)")
            }
            if n == 0 { throw Failure(message: "connection closed") }
            buffer.append(contentsOf: chunk[..<n])
            return
        }
    }

    private func readResponse() throws -> (Int, [UInt8]) {
        let separator: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int?
        while headerEnd == nil {
            if buffer.count >= 4 {
                for i in 0...(buffer.count - 4) where buffer[i] == 13 && Array(buffer[i..<(i + 4)]) == separator { headerEnd = i; break }
            }
            if headerEnd == nil { try fill() }
        }
        let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1."),
              let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") else {
            throw Failure(message: "bad status line")
        }
        var length = 0
        var closeAfter = false
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-length" { length = Int(value) ?? 0 }
            if name == "connection" && value.lowercased() == "close" { closeAfter = true }
        }
        let bodyStart = headerEnd! + 4
        while buffer.count < bodyStart + length { try fill() }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        if closeAfter { close() }
        return (status, body)
    }
}
