import ArgumentParser
import ClerkAuth
import Foundation

/// Connections opening and closing at a fixed rate; afterwards no user of the run may still be online.
struct Churn: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open R connections/s for D s, each closed after --hold s: connect latency, then ghosts (online users with no connection) and lastSeen.")

    @OptionGroup var common: CommonOptions
    @Option(help: "New connections per second (each also closes: as many disconnects per second).")
    var rate: Double = 200
    @Option(help: "Seconds of churn.")
    var duration: Double = 60
    @Option(help: "Seconds a welcomed connection stays open before it closes.")
    var hold: Double = 1
    @Option(help: "Distinct users the connections cycle through (default: rate), so one user's connections overlap.")
    var users: Int?
    @Option(help: "Fraction of connections that close right after sending auth, before the welcome.")
    var abruptFraction: Double = 0.1
    @Option(help: "Most seconds to wait, after the last scheduled open, for every connection to be welcomed and closed.")
    var drain: Double = 45
    @Option(help: "Seconds to wait after the last close before reading presence.")
    var settle: Double = 3
    @OptionGroup var pymongo: PymongoOptions

    func validate() throws {
        guard rate > 0, duration > 0, hold >= 0 else { throw ValidationError("--rate and --duration must be positive") }
        guard (0...1).contains(abruptFraction) else { throw ValidationError("--abrupt-fraction must be 0-1") }
    }

    func run() throws {
        let run = common.run
        let keys = try common.keys()
        let harness = try Harness(url: try common.wsURL)
        let prefix = "bench_churn_\(run)_"
        let userCount = max(1, users ?? Int(rate.rounded()))
        let userIDs = (0..<userCount).map { prefix + String(format: "%05d", $0) }
        let tokens = mintTokens(keys, users: userIDs)
        let total = max(1, Int(rate * duration))
        let abruptEvery = abruptFraction > 0 ? max(1, Int((1 / abruptFraction).rounded())) : Int.max
        let conns = (0..<total).map { i -> Conn in
            let c = Conn(index: i, userID: userIDs[i % userCount], token: tokens[i % userCount], harness: harness)
            c.closeAfterAuth = i % abruptEvery == abruptEvery - 1
            return c
        }

        var started = 0
        var waiting: [Conn] = []        // welcomed, in welcome order: closed after `hold`
        var waitingHead = 0
        var lastClose: [String: Date] = [:]
        var stuck = 0
        harness.onWelcome = { c in
            if c.closeAfterAuth { c.close() } else { waiting.append(c) }
        }
        harness.onClosed = { c, _ in lastClose[c.userID] = Date() }

        let cpu = CPUMeter(serverPid: common.serverPid, dbPid: common.dbPid)
        cpu.start()
        let schedule = harness.sync { Schedule(startNs: monoNow(), rate: rate, total: total) }
        let holdNs = UInt64(hold * 1e9)
        let ticker = Ticker(harness: harness, periodMicros: 1000) { now in
            let due = schedule.due(at: now)
            while started < due { harness.start(conns[started]); started += 1 }
            while waitingHead < waiting.count, waiting[waitingHead].welcomedNs + holdNs <= now {
                waiting[waitingHead].close()
                waitingHead += 1
            }
            if waitingHead > 4096 { waiting.removeFirst(waitingHead); waitingHead = 0 }
            return true
        }
        sleepSeconds(duration)
        // Every connection closes `hold` after its welcome; ones never welcomed are given up after `drain`.
        let allClosed = harness.waitUntil(timeout: hold + drain, poll: 0.05) {
            started == total && conns.allSatisfy { $0.state == .closed }
        }
        ticker.stop()
        let churnSeconds = seconds(monoNow() - schedule.startNs)
        if !allClosed {
            stuck = harness.sync { conns.filter { $0.state == .connecting || $0.state == .open }.count }
            harness.closeAll(conns, timeout: 10)
        }
        let usage = cpu.stop()
        let (welcomed, failed, latency, errors, closes) = harness.sync {
            (harness.welcomed, harness.failedBeforeWelcome, harness.connectLatency, harness.errorCodes, harness.closeReasons)
        }
        let abrupt = conns.filter(\.closeAfterAuth).count
        let unexpectedFailures = harness.sync { conns.filter { !$0.closeAfterAuth && $0.welcomedNs == 0 }.count }
        Console.print("churned \(total) connections in \(fmt(churnSeconds, 1)) s: \(welcomed) welcomed, \(failed) closed before welcome (\(abrupt) on purpose)")
        sleepSeconds(settle)

        // Presence as clients see it: users.query from one more connection.
        let checkerID = "bench_chk_\(run)"
        let checkerToken = mintTokens(keys, users: [checkerID])[0]
        let checker = Conn(index: -1, userID: checkerID, token: checkerToken, harness: harness)
        let checkerRamp = harness.openAll([checker], concurrency: 1, timeout: 60)
        guard checkerRamp.opened == 1 else { throw BenchError("the checking connection could not open") }
        func query(online: Bool) throws -> [[String: Any]] {
            var found: [[String: Any]] = []
            var after = prefix
            while true {
                var answer: [String: Any]?
                let id = "q\(UInt32.random(in: 0...UInt32.max))"
                harness.onFrame = { _, frame in if frame["id"] as? String == id { answer = frame } }
                harness.sync { checker.send("{\"type\":\"users.query\",\"id\":\"\(id)\",\"online\":\(online),\"limit\":200,\"after\":\"\(after)\"}") }
                harness.waitUntil(timeout: 20) { answer != nil }
                guard let frame = harness.sync({ answer }), frame["type"] as? String == "ok",
                      let data = frame["data"] as? [String: Any], let page = data["users"] as? [[String: Any]] else {
                    throw BenchError("users.query failed: \(harness.sync { answer }.map { "\($0)" } ?? "no answer")")
                }
                let mine = page.filter { ($0["userId"] as? String)?.hasPrefix(prefix) == true }
                found += mine
                guard mine.count == page.count, let next = data["next"] as? String, !next.isEmpty else { return found }
                after = next
            }
        }
        let firstCheck = try query(online: true)
        var ghosts = firstCheck.compactMap { $0["userId"] as? String }
        var ghostsLater: Int?
        if !ghosts.isEmpty {
            sleepSeconds(5)
            let again = try query(online: true).compactMap { $0["userId"] as? String }
            ghostsLater = again.count
            ghosts = again
        }
        let everyone = try query(online: false)
        let closesByUser = harness.sync { lastClose }
        let parse = ISO8601DateFormatter()
        parse.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        var missingLastSeen = 0
        var staleLastSeen = 0
        for u in everyone {
            guard let id = u["userId"] as? String, let text = u["lastSeen"] as? String, let seen = parse.date(from: text) else {
                missingLastSeen += 1
                continue
            }
            // lastSeen is the server's time of the user's last disconnect: not before our last close minus slack.
            if let closed = closesByUser[id], seen < closed.addingTimeInterval(-2) { staleLastSeen += 1 }
        }
        var mongo: [String: Any]?
        mongo = pymongoCheck(prefix: prefix)
        harness.closeAll([checker], timeout: 10)

        // Achieved: connections that got through (welcomed, or closed on purpose) per second, up to the last welcome.
        let lastWelcome = harness.sync { conns.map(\.welcomedNs).max() ?? 0 }
        let through = welcomed + abrupt
        let connectsPerSecond = lastWelcome > schedule.startNs ? Double(through) / max(seconds(lastWelcome - schedule.startNs), duration) : 0
        var report = ScenarioReport(scenario: "churn")
        report.parameters = ["rate_per_s": rate, "duration_s": duration, "hold_s": hold, "users": userCount,
                             "abrupt_fraction": abruptFraction, "settle_s": settle]
        report.results = [
            "connections": total, "welcomed": welcomed, "closed_before_welcome": failed, "closed_before_welcome_on_purpose": abrupt,
            "stuck": stuck, "unexpected_failures": unexpectedFailures, "connects_per_s": Latency.round(connectsPerSecond), "connect_latency": latency.json,
            "users_seen": everyone.count, "ghosts_after_settle": firstCheck.count, "ghosts_after_extra_5s": ghostsLater as Any? ?? NSNull(),
            "ghost_ids": Array(ghosts.prefix(10)), "missing_last_seen": missingLastSeen, "stale_last_seen": staleLastSeen,
            "pymongo": mongo as Any? ?? NSNull(), "cpu_percent": usage, "errors": errors,
        ]
        report.parametersText = "\(fmtInt(rate)) connects/s (+ as many disconnects) for \(fmt(duration, 0)) s over \(userCount) users, hold \(fmt(hold, 1)) s, "
            + "\(Int(abruptFraction * 100))% close before welcome; checked \(fmt(settle, 0)) s after"
        var mongoText = ""
        if let mongo { mongoText = "; pymongo: \(mongo["online"] ?? "?") online, \(mongo["connection_records"] ?? "?") connection records" }
        report.resultsText = "\(fmtInt(connectsPerSecond)) connects/s achieved, \(welcomed) welcomed, \(unexpectedFailures) unexpected failures, \(stuck) stuck; "
            + "connect \(latency.text); ghosts \(firstCheck.count)\(ghostsLater.map { " (\($0) after +5 s)" } ?? ""); "
            + "lastSeen missing \(missingLastSeen)/\(everyone.count), stale \(staleLastSeen)\(mongoText); cpu \(CPUMeter.text(usage))"
        report.target = "\(fmtInt(Self.targetRate)) connects + disconnects/s for a minute with zero ghosts"
        let mongoClean = mongo.map { ($0["online"] as? Int ?? 1) == 0 && ($0["connection_records"] as? Int ?? 1) == 0 } ?? true
        let met = firstCheck.isEmpty && missingLastSeen == 0 && mongoClean && stuck == 0
            && connectsPerSecond >= 0.95 * rate && unexpectedFailures == 0
        var short: [String] = []
        if duration < 60 { short.append("\(fmt(duration, 0)) s") }
        if rate < Self.targetRate { short.append("\(fmtInt(rate))/s") }
        report.verdict = (met ? "met" : (firstCheck.isEmpty && mongoClean ? "zero ghosts; rate not met" : "not met"))
            + (short.isEmpty ? "" : " (short run: \(short.joined(separator: ", ")))")
        if !ghosts.isEmpty { report.notes.append("ghost users: \(ghosts.prefix(5).joined(separator: ", "))") }
        let unexpected = closes.filter { !$0.key.hasPrefix("1000") && !$0.key.hasPrefix("closed") }
        if !unexpected.isEmpty { report.notes.append("closes: \(unexpected.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))") }
        if !errors.isEmpty { report.notes.append("errors: \(harness.errorSummary)") }
        report.emit(jsonOut: common.jsonOut)
        harness.shutdown()
    }

    /// Issue 13's target (it was 200/s before).
    static let targetRate: Double = 500

    /// Reads the run's users and connection records straight from MongoDB.
    private func pymongoCheck(prefix: String) -> [String: Any]? {
        let script = """
        import json, re, sys, pymongo
        uri, prefix = sys.argv[1], sys.argv[2]
        client = pymongo.MongoClient(uri, directConnection=True, serverSelectionTimeoutMS=5000)
        db = client.get_default_database()
        match = {"$regex": "^" + re.escape(prefix)}
        users = list(db.users.find({"clerkId": match}, {"clerkId": 1, "isOnline": 1, "lastSeen": 1}))
        print(json.dumps({"users": len(users), "online": sum(1 for u in users if u.get("isOnline")),
                          "no_last_seen": sum(1 for u in users if not u.get("lastSeen")),
                          "connection_records": db.connections.count_documents({"userId": match})}))
        """
        return pymongo.run(script, [prefix])
    }
}
