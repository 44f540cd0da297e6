import Foundation
import Synchronization
import Glibc
import WebSocketClient

/// The text of a timed message: `bench <monotonic ns of the intended send> <sender index>`.
enum BenchText {
    static let marker: [UInt8] = Array("\"text\":\"bench ".utf8)

    static func make(sentNs: UInt64, tag: Int) -> String { "bench \(sentNs) \(tag)" }

    /// memmem (which Glibc's module map hides): memchr for the first byte, memcmp for the rest.
    private static func find(_ hay: UnsafeRawPointer, _ count: Int, _ needle: UnsafeRawPointer, _ length: Int) -> UnsafeRawPointer? {
        let first = Int32(needle.load(as: UInt8.self))
        var p = hay
        var left = count
        while left >= length, let hit = memchr(p, first, left - length + 1) {
            if memcmp(hit, needle, length) == 0 { return UnsafeRawPointer(hit) }
            left -= (UnsafeRawPointer(hit) - p) + 1
            p = UnsafeRawPointer(hit) + 1
        }
        return nil
    }

    /// Finds the timestamp and tag in a raw `message` event without decoding the JSON.
    static func parse(_ m: [UInt8]) -> (sent: UInt64, tag: Int)? {
        m.withUnsafeBytes { raw -> (UInt64, Int)? in
            guard let base = raw.baseAddress, raw.count > marker.count else { return nil }
            guard let found = marker.withUnsafeBytes({ mk in find(base, raw.count, mk.baseAddress!, mk.count) }) else { return nil }
            let end = base.assumingMemoryBound(to: UInt8.self) + raw.count
            var p = UnsafePointer(found.assumingMemoryBound(to: UInt8.self)) + marker.count
            var ns: UInt64 = 0
            var digits = 0
            while p < end, p.pointee >= 48, p.pointee <= 57 { ns = ns &* 10 &+ UInt64(p.pointee - 48); p += 1; digits += 1 }
            guard digits > 0 else { return nil }
            var tag = -1
            if p < end, p.pointee == 32 {
                p += 1
                var t = 0
                var tagDigits = 0
                while p < end, p.pointee >= 48, p.pointee <= 57 { t = t &* 10 &+ Int(p.pointee - 48); p += 1; tagDigits += 1 }
                if tagDigits > 0 { tag = t }
            }
            return (ns, tag)
        }
    }
}

/// One client connection; all of its state is used on the loop thread.
final class Conn: WebSocketClientDelegate {
    enum State { case idle, connecting, open, closed }

    let index: Int
    let userID: String
    let token: String
    unowned let harness: Harness
    var socket: ClientSocket?
    var state = State.idle
    var startedNs: UInt64 = 0
    /// The upgrade's answer (101) read: the server's authentication deadline started a little before.
    var connectedNs: UInt64 = 0
    var welcomedNs: UInt64 = 0
    var closedNs: UInt64 = 0
    var closeCode: UInt16?
    var closeReason = ""
    var firstError: String?
    /// Churn: close right after sending auth, before the welcome.
    var closeAfterAuth = false
    var inRamp = false
    /// Reconnect: where the next attempt goes (default: the harness's URL), failed attempts since the
    /// last welcome (the backoff exponent), and when the connection it replaces was lost.
    var url: URL?
    var attempts = 0
    var lostNs: UInt64 = 0

    init(index: Int, userID: String, token: String, harness: Harness) {
        self.index = index
        self.userID = userID
        self.token = token
        self.harness = harness
    }

    /// Harness thread. A socket is used on its own loop's thread.
    func send(_ text: String) {
        guard let socket else { return }
        if harness.isSharded { socket.loop.post { socket.send(text) } } else { socket.send(text) }
    }

    func close() {
        guard let socket else { return }
        if harness.isSharded { socket.loop.post { socket.close() } } else { socket.close() }
    }

    // The delegate calls come on the socket's loop thread; the auth goes out from there at once, the
    // rest is handed to the harness thread.
    func connected(_ socket: ClientSocket) {
        let at = monoNow()
        socket.send("{\"type\":\"auth\",\"id\":\"auth\",\"token\":\"\(token)\"}")
        if closeAfterAuth { socket.close() }
        harness.onHarnessThread { [self] in
            self.socket = socket
            connectedNs = at
        }
    }

    func received(_ socket: ClientSocket, message: [UInt8]) {
        harness.onHarnessThread { [self] in harness.received(self, message) }
    }

    func closed(_ socket: ClientSocket, code: UInt16?, reason: String) {
        harness.onHarnessThread { [self] in
            self.socket = socket
            harness.closed(self, code: code, reason: reason)
        }
    }
}

/// Many connections on one WebSocketClientLoop. Callbacks and scenario state live on the loop
/// thread; the main thread drives phases with `sync` and `waitUntil`. With `socketLoops` > 1 the
/// sockets are spread over that many more loops (threads), and `loop` only runs the harness: lws 4.1
/// keeps each context's timeouts in one sorted list walked at every insertion, and 10,000 sockets
/// closed and reopened at once on one context kept its thread busy for seconds (what a storm of
/// independent clients does not do).
final class Harness {
    let loop: WebSocketClientLoop
    let url: URL
    private let socketLoops: [WebSocketClientLoop]
    var isSharded: Bool { socketLoops.count > 1 }

    /// Runs `body` on the harness thread: at once when the sockets share it, else posted there.
    func onHarnessThread(_ body: @escaping () -> Void) {
        if isSharded { loop.post(body) } else { body() }
    }

    /// A timed message arrived (sent ns, sender tag, arrival ns).
    var onBench: ((Conn, UInt64, Int, UInt64) -> Void)?
    /// Any other frame, decoded.
    var onFrame: ((Conn, [String: Any]) -> Void)?
    var onWelcome: ((Conn) -> Void)?
    /// The connection closed (it had been welcomed when the flag is true).
    var onClosed: ((Conn, Bool) -> Void)?

    private(set) var errorCodes: [String: Int] = [:]
    private(set) var closeReasons: [String: Int] = [:]
    private(set) var connectLatency = Latency()
    private(set) var welcomed = 0
    private(set) var failedBeforeWelcome = 0
    private(set) var closedAfterWelcome = 0
    private(set) var openCount = 0

    // The connection ramp.
    private var rampQueue: ArraySlice<Conn> = []
    private var rampInFlight = 0
    private var rampLimit = 1
    private(set) var rampDone = 0
    private(set) var rampFailed = 0
    private var rampTotal = 0
    private var rampLastNs: UInt64 = 0
    /// Welcome times of the current ramp, in order.
    private(set) var rampWelcomes: [UInt64] = []

    /// Loops are never deinitialized: destroying the lws context while its service thread may still be
    /// inside lws_service (the loop offers no join) could crash the process on its way out.
    private static let retained = Mutex<[WebSocketClientLoop]>([])

    init(url: URL, socketLoops: Int = 1) throws {
        let loop = try WebSocketClientLoop()
        self.loop = loop
        self.socketLoops = socketLoops > 1 ? try (0..<socketLoops).map { _ in try WebSocketClientLoop() } : [loop]
        let all = socketLoops > 1 ? [loop] + self.socketLoops : [loop]
        Self.retained.withLock { $0 += all }
        self.url = url
        for l in all { l.start() }
    }

    func shutdown() {
        loop.stop()
        if isSharded { for l in socketLoops { l.stop() } }
    }

    /// Runs `body` on the loop thread and waits for its result.
    func sync<T>(_ body: @escaping () -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        var result: T?
        loop.post { result = body(); done.signal() }
        done.wait()
        return result!
    }

    /// Polls `condition` on the loop thread until it holds or `timeout` seconds pass.
    @discardableResult
    func waitUntil(timeout: Double, poll: Double = 0.02, _ condition: @escaping () -> Bool) -> Bool {
        let deadline = monoNow() + UInt64(timeout * 1e9)
        while true {
            if sync(condition) { return true }
            if monoNow() > deadline { return false }
            sleepSeconds(poll)
        }
    }

    /// Loop thread: starts a connection.
    func start(_ c: Conn) {
        c.state = .connecting
        c.startedNs = monoNow()
        c.connectedNs = 0
        socketLoops[(c.index & Int.max) % socketLoops.count].connect(c.url ?? url, delegate: c)
    }

    struct RampResult {
        var opened: Int
        var failed: Int
        var seconds: Double
        var timedOut: Bool
    }

    /// Opens every connection, at most `concurrency` in the handshake/auth phase at once, and waits
    /// until each is welcomed or failed.
    func openAll(_ conns: [Conn], concurrency: Int, timeout: Double) -> RampResult {
        let start = monoNow()
        sync { [self] in
            rampQueue = conns[...]
            rampInFlight = 0
            rampLimit = max(1, concurrency)
            rampDone = 0
            rampFailed = 0
            rampTotal = conns.count
            rampLastNs = start
            rampWelcomes = []
            pumpRamp()
        }
        var lastReport = start
        let finished = waitUntil(timeout: timeout, poll: 0.05) { [self] in
            let now = monoNow()
            if now - lastReport >= 10_000_000_000 {
                lastReport = now
                let recent = rampWelcomes.reversed().prefix { $0 + 10_000_000_000 >= now }.count
                Console.print("  … \(rampDone - rampFailed) of \(rampTotal) open after \(Int(seconds(now - start))) s (\(recent / 10)/s over the last 10 s)")
            }
            return rampDone == rampTotal
        }
        return sync { [self] in
            let end = finished ? rampLastNs : monoNow()
            rampQueue = []
            return RampResult(opened: rampDone - rampFailed, failed: rampFailed, seconds: seconds(end - start), timedOut: !finished)
        }
    }

    private func pumpRamp() {
        while rampInFlight < rampLimit, let c = rampQueue.popFirst() {
            rampInFlight += 1
            c.inRamp = true
            start(c)
        }
    }

    private func rampFinished(_ c: Conn, ok: Bool) {
        guard c.inRamp else { return }
        c.inRamp = false
        rampInFlight -= 1
        rampDone += 1
        if !ok { rampFailed += 1 }
        rampLastNs = monoNow()
        pumpRamp()
    }

    /// Closes the open connections and waits for them to be gone.
    @discardableResult
    func closeAll(_ conns: [Conn], timeout: Double) -> Bool {
        sync { for c in conns where c.state == .open || c.state == .connecting { c.close() } }
        return waitUntil(timeout: timeout, poll: 0.05) { conns.allSatisfy { $0.state == .closed || $0.state == .idle } }
    }

    // MARK: loop-thread events

    func received(_ c: Conn, _ message: [UInt8]) {
        if let (sent, tag) = BenchText.parse(message) {
            onBench?(c, sent, tag, monoNow())
            return
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(message))) as? [String: Any] else { return }
        let type = object["type"] as? String ?? ""
        if type == "welcome", c.state == .connecting {
            c.state = .open
            c.welcomedNs = monoNow()
            welcomed += 1
            openCount += 1
            connectLatency.record(from: c.startedNs, to: c.welcomedNs)
            if c.inRamp { rampWelcomes.append(c.welcomedNs) }
            rampFinished(c, ok: true)
            onWelcome?(c)
            return
        }
        if type == "error" {
            let code = object["code"] as? String ?? "?"
            errorCodes[code, default: 0] += 1
            if c.firstError == nil { c.firstError = "\(code): \(object["message"] as? String ?? "")" }
        }
        onFrame?(c, object)
    }

    func closed(_ c: Conn, code: UInt16?, reason: String) {
        let wasOpen = c.state == .open
        c.state = .closed
        c.closedNs = monoNow()
        c.closeCode = code
        c.closeReason = reason
        let key = code.map { "\($0) \(reason.prefix(60))" } ?? String(reason.prefix(60))
        closeReasons[key, default: 0] += 1
        if wasOpen {
            openCount -= 1
            closedAfterWelcome += 1
        } else {
            failedBeforeWelcome += 1
            rampFinished(c, ok: false)
        }
        onClosed?(c, wasOpen)
    }

    var errorSummary: String {
        errorCodes.isEmpty ? "none" : errorCodes.sorted { $0.key < $1.key }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
    }
}

/// Calls `body` on the loop thread about every `periodMicros` (one pending call at a time) until it returns false.
final class Ticker: @unchecked Sendable {   // unchecked: flags under `lock`; `body` runs only on the loop thread
    private let lock = NSLock()
    private var pending = false
    private var running = true
    private var thread: Thread?

    init(harness: Harness, periodMicros: UInt32 = 500, _ body: @escaping (UInt64) -> Bool) {
        let loop = harness.loop
        nonisolated(unsafe) let body = body   // called only on the loop thread, through `loop.post`
        let thread = Thread { [self] in
            while true {
                lock.lock()
                let keepGoing = running
                let post = keepGoing && !pending
                if post { pending = true }
                lock.unlock()
                if !keepGoing { break }
                if post {
                    loop.post { [self] in
                        let more = body(monoNow())
                        lock.lock()
                        pending = false
                        if !more { running = false }
                        lock.unlock()
                    }
                }
                usleep(periodMicros)
            }
        }
        thread.name = "bench-ticker"
        self.thread = thread
        thread.start()
    }

    func stop() { lock.lock(); running = false; lock.unlock() }

    var isRunning: Bool { lock.lock(); defer { lock.unlock() }; return running }
}

/// A fixed-rate schedule: message k is due at start + k / rate.
struct Schedule {
    let startNs: UInt64
    let rate: Double
    let total: Int

    func intended(_ k: Int) -> UInt64 { startNs + UInt64(Double(k) * 1e9 / rate) }

    /// How many messages are due by `now` (capped at total).
    func due(at now: UInt64) -> Int {
        guard now >= startNs else { return 0 }
        return min(total, Int(Double(now - startNs) * rate / 1e9) + 1)
    }
}
