import ArgumentParser
import ClerkAuth
import Foundation
import Histogram

// MARK: clock

/// Nanoseconds on CLOCK_MONOTONIC: senders and receivers live in this process, so one clock serves both.
@inline(__always) func monoNow() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func seconds(_ ns: UInt64) -> Double { Double(ns) / 1e9 }

func sleepSeconds(_ s: Double) { if s > 0 { usleep(useconds_t(s * 1e6)) } }

// MARK: process limits and /proc

/// Thousands of sockets: the soft descriptor limit goes up to the hard one.
@discardableResult func raiseFileLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return UInt64(limit.rlim_cur)
}

enum Proc {
    /// VmRSS in KiB.
    static func rssKiB(_ pid: Int32) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.dropFirst(6).trimmingCharacters(in: .whitespaces).split(separator: " ").first ?? "")
        }
        return nil
    }

    /// Busy and total ticks of all cores, from the first line of /proc/stat.
    static func hostTicks() -> (busy: UInt64, total: UInt64)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let values = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        guard values.count >= 5 else { return nil }
        let total = values.prefix(8).reduce(0, +)
        let idle = values[3] + values[4]   // idle + iowait
        return (total - idle, total)
    }

    /// False once the process has exited (gone, or a zombie its parent has not reaped yet).
    static func alive(_ pid: Int32) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return false }
        return text[text.index(after: close)...].split(separator: " ").first != "Z"
    }

    /// utime + stime in clock ticks.
    static func cpuTicks(_ pid: Int32) -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }
}

/// CPU use of the server, the database and this process over a window (100 % = one core busy).
final class CPUMeter {
    private let pids: [(String, Int32)]
    private var startTicks: [String: UInt64] = [:]
    private var startNs: UInt64 = 0
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    init(serverPid: Int32?, dbPid: Int32?) {
        var pids: [(String, Int32)] = [("bench", getpid())]
        if let serverPid { pids.append(("server", serverPid)) }
        if let dbPid { pids.append(("db", dbPid)) }
        self.pids = pids
    }

    private var hostStart: (busy: UInt64, total: UInt64)?

    func start() {
        startNs = monoNow()
        for (name, pid) in pids { startTicks[name] = Proc.cpuTicks(pid) }
        hostStart = Proc.hostTicks()
    }

    /// Percent of one core per process name.
    func stop() -> [String: Double] {
        let elapsed = seconds(monoNow() - startNs)
        var out: [String: Double] = [:]
        for (name, pid) in pids {
            guard let a = startTicks[name], let b = Proc.cpuTicks(pid), elapsed > 0 else { continue }
            out[name] = (Double(b - a) / ticksPerSecond / elapsed * 100).rounded()
        }
        // The whole machine (every process, every core): 100 % = all cores busy.
        if let a = hostStart, let b = Proc.hostTicks(), b.total > a.total {
            out["host"] = (Double(b.busy - a.busy) / Double(b.total - a.total) * 100).rounded()
        }
        return out
    }

    static func text(_ cpu: [String: Double]) -> String {
        ["server", "db", "bench", "host"].compactMap { k in cpu[k].map { "\(k) \(Int($0))%" } }.joined(separator: ", ")
    }
}

// MARK: latency

/// An HdrHistogram of microseconds (3 significant digits), reported in milliseconds.
struct Latency {
    private(set) var histogram: Histogram<UInt64>

    init() {
        histogram = Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000,
                                      numberOfSignificantValueDigits: .three)
        histogram.autoResize = true
    }

    mutating func record(from sent: UInt64, to now: UInt64) {
        _ = histogram.record(now > sent ? max(1, (now - sent) / 1000) : 1)
    }

    mutating func add(_ other: Latency) { histogram.add(other.histogram) }

    var count: UInt64 { histogram.totalCount }

    private func ms(_ percentile: Double) -> Double {
        Self.round(Double(histogram.valueAtPercentile(percentile)) / 1000)
    }

    static func round(_ v: Double) -> Double { (v * 100).rounded() / 100 }

    var json: [String: Any] {
        guard count > 0 else { return ["count": 0] }
        return ["count": count, "p50_ms": ms(50), "p90_ms": ms(90), "p99_ms": ms(99), "p999_ms": ms(99.9),
                "max_ms": Self.round(Double(histogram.max) / 1000)]
    }

    var p99ms: Double { count > 0 ? ms(99) : .infinity }

    var text: String {
        guard count > 0 else { return "no samples" }
        return "p50 \(ms(50)) / p90 \(ms(90)) / p99 \(ms(99)) / p99.9 \(ms(99.9)) / max \(Self.round(Double(histogram.max) / 1000)) ms"
    }
}

// MARK: options shared by the WebSocket scenarios

struct CommonOptions: ParsableArguments {
    @Option(help: "The server's WebSocket URL.")
    var url: String = "ws://127.0.0.1:3000/ws"
    @Option(help: "Directory with private.pem/public.pem (the server must trust public.pem as CLERK_JWT_KEY).")
    var keysDir: String = ".dev-keys"
    @Option(help: "The server's pid: resident memory (idle) and CPU use.")
    var serverPid: Int32?
    @Option(help: "The database's pid: CPU use.")
    var dbPid: Int32?
    @Option(help: "Append the scenario's JSON object (one line) to this file.")
    var jsonOut: String?
    @Option(help: "Most connections opening (connected, not yet welcomed) at once.")
    var connectConcurrency: Int = 200
    @Flag(help: "SIGKILL --server-pid once measured, instead of closing the connections: its thousands of disconnects would keep the database busy (bench.sh starts a fresh server per scenario).")
    var killServerAtEnd = false
    @Option(help: "A tag in user ids so that runs against one database do not collide (default: random).")
    var runId: String?

    var wsURL: URL {
        get throws {
            guard let u = URL(string: url), u.scheme == "ws" || u.scheme == "wss" else { throw ValidationError("--url must be ws:// or wss://") }
            return u
        }
    }

    func keys() throws -> DevelopmentKeys { try DevelopmentKeys.load(from: URL(fileURLWithPath: keysDir)) }

    /// Ends a scenario: closes the connections, or kills the server (see --kill-server-at-end).
    func finish(_ harness: Harness, _ conns: [Conn]) {
        if killServerAtEnd, let serverPid {
            kill(serverPid, SIGKILL)
            sleepSeconds(0.2)
        } else {
            harness.closeAll(conns, timeout: 30)
        }
        harness.shutdown()
    }

    var run: String { runId ?? String(UInt32.random(in: 0...UInt32.max), radix: 36) }
}

/// Session tokens, minted on every core with the key parsed once. The first is checked against
/// `DevelopmentKeys.mint` (RS256 is deterministic: the same claims give the same token).
func mintTokens(_ keys: DevelopmentKeys, users: [String]) -> [String] {
    // unchecked: each worker writes its own indices; read after concurrentPerform returns
    final class Box: @unchecked Sendable { var tokens: [String]; init(_ n: Int) { tokens = Array(repeating: "", count: n) } }
    guard !users.isEmpty else { return [] }
    let minter = try! TokenMinter(privateKeyPEM: keys.privateKeyPEM)
    let now = Date()
    let lifetime = 3 * 3600
    let reference = try! DevelopmentKeys.mint(privateKeyPEM: keys.privateKeyPEM, userID: users[0], sessionID: "sess_\(users[0])",
                                              lifetime: TimeInterval(lifetime), azp: nil, issuer: nil, kid: nil, now: now)
    precondition(try! minter.mint(userID: users[0], sessionID: "sess_\(users[0])", lifetime: lifetime, now: now) == reference,
                 "TokenMinter differs from DevelopmentKeys.mint")
    let box = Box(users.count)
    let chunks = max(1, ProcessInfo.processInfo.activeProcessorCount * 2)
    let lock = NSLock()
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        var local: [(Int, String)] = []
        var i = chunk
        while i < users.count {
            local.append((i, try! minter.mint(userID: users[i], sessionID: "sess_\(users[i])", lifetime: lifetime, now: now)))
            i += chunks
        }
        lock.lock()
        for (i, t) in local { box.tokens[i] = t }
        lock.unlock()
    }
    return box.tokens
}

/// A scenario that could not run to its end (printed as "Error: ..." without the usage text).
struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// MARK: results

/// One scenario's parameters and results: printed, and appended as one JSON line for bench.sh.
struct ScenarioReport {
    var scenario: String
    var parameters: [String: Any] = [:]
    var results: [String: Any] = [:]
    /// One line each for the results table.
    var parametersText = ""
    var resultsText = ""
    var target = ""
    var verdict = ""
    var notes: [String] = []

    func emit(jsonOut: String?) {
        Console.print("== \(scenario) ==")
        Console.print("parameters: \(parametersText)")
        Console.print("results:    \(resultsText)")
        Console.print("target:     \(target)")
        Console.print("verdict:    \(verdict)")
        for n in notes { Console.print("note:       \(n)") }
        let object: [String: Any] = ["scenario": scenario, "parameters": parameters, "results": results,
                                     "summary": ["parameters": parametersText, "results": resultsText, "target": target,
                                                 "verdict": verdict, "notes": notes]]
        guard let data = try? JSONSerialization.data(withJSONObject: Self.clean(object), options: [.sortedKeys]) else {
            Console.print("could not encode the JSON result")
            return
        }
        let line = String(decoding: data, as: UTF8.self)
        if jsonOut == nil { Console.print("json: \(line)") }
        if let jsonOut {
            if !FileManager.default.fileExists(atPath: jsonOut) { _ = FileManager.default.createFile(atPath: jsonOut, contents: nil) }
            if let h = FileHandle(forWritingAtPath: jsonOut) {
                h.seekToEndOfFile()
                h.write(Data((line + "\n").utf8))
                h.closeFile()
            }
        }
    }

    /// JSONSerialization refuses NaN/infinity.
    private static func clean(_ value: Any) -> Any {
        switch value {
        case let d as Double: return d.isFinite ? d : NSNull()
        case let o as [String: Any]: return o.mapValues(clean)
        case let a as [Any]: return a.map(clean)
        default: return value
        }
    }
}

/// `--mongo-uri` and `--python`: figures read straight from the database with pymongo.
struct PymongoOptions: ParsableArguments {
    @Option(help: "MongoDB URI (with the servers' database): figures read straight from it with pymongo.")
    var mongoUri: String?
    @Option(help: "Python with pymongo, for --mongo-uri.")
    var python: String = ".venv/bin/python"

    /// Runs `script` with the URI as its first argument; nil without --mongo-uri or when it fails.
    func run(_ script: String, _ arguments: [String] = []) -> [String: Any]? {
        guard let mongoUri else { return nil }
        return runPython(python, script, [mongoUri] + arguments)
    }
}

/// Runs a Python script (with pymongo) and decodes the JSON object it prints; nil (and a line on the
/// console) when it fails.
func runPython(_ python: String, _ script: String, _ arguments: [String]) -> [String: Any]? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: python)
    process.arguments = ["-c", script] + arguments
    let out = Pipe()
    process.standardOutput = out
    do { try process.run() } catch {
        Console.print("python not run: \(error)")
        return nil
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0, let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        Console.print("python script failed (status \(process.terminationStatus))")
        return nil
    }
    return object
}

func fmt(_ v: Double, _ digits: Int = 1) -> String { String(format: "%.\(digits)f", v) }
func fmtInt(_ v: Double) -> String {
    let n = Int(v.rounded())
    let f = NumberFormatter()
    f.numberStyle = .decimal
    f.groupingSeparator = ","
    return f.string(from: NSNumber(value: n)) ?? "\(n)"
}
