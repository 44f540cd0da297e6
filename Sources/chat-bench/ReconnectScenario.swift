import ArgumentParser
import ClerkAuth
import Foundation
import Glibc

/// A restart under load (issue 13, reconnect storms). N authenticated clients sit on instance A; A gets
/// SIGTERM and closes them with 1012; each client reconnects, after the protocol's jitter (a random
/// delay up to 0.5 s, then exponential backoff with full jitter after a failed attempt), to instance B,
/// which runs on the same database from the start: what a load balancer does in a rolling restart.
/// A watcher connected to B the whole time follows the presence of all N users.
struct Reconnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N clients on instance A (--url, --server-pid) move to instance B (--target-url) when A gets SIGTERM: time until all are back, connect latency, presence errors, database operations per connect.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Instance B's WebSocket URL (same database as --url): the clients reconnect there. Its /metrics is read too.")
    var targetUrl: String
    @Option(help: "Instance B's pid: CPU use; SIGKILLed at the end with --kill-server-at-end.")
    var targetPid: Int32?
    @Option(help: "Clients (authenticated users) that move.")
    var clients: Int = 10_000
    @Option(help: "Seconds: upper bound of the random delay before the first reconnect (protocol: up to 0.5 s after 1012), and the start of the backoff.")
    var jitter: Double = 0.5
    @Option(help: "Seconds: cap of the exponential backoff after failed attempts (protocol: 30 s).")
    var maxBackoff: Double = 30
    @Option(help: "Give up waiting for every client to be back after this many seconds.")
    var timeout: Double = 300
    @Option(help: "Give up on the first ramp (all clients onto instance A) after this many seconds.")
    var rampTimeout: Double = 400
    @Option(help: "Seconds the watcher gets, after the last welcome (or the last leave), to show the final presence.")
    var settle: Double = 10
    @Option(help: "Clients that close at the end: the watcher must then show them offline.")
    var leavers: Int = 500
    @Option(help: "Seconds to wait for instance A's `instances` record to go (removed at its exit, or swept by B) before the final presence check.")
    var instanceWait: Double = 180
    @Option(help: "Seconds the watcher gets to show the leavers offline (their disconnects queue behind other database work).")
    var leaveWait: Double = 60
    @Option(help: "Client loops (threads) the N clients are spread over, as N independent clients would be: one lws client context with 10,000 sockets is itself late in a storm (its timeout list).")
    var clientLoops: Int = 4
    @OptionGroup var pymongo: PymongoOptions

    func validate() throws {
        guard common.serverPid != nil else { throw ValidationError("--server-pid (instance A, which gets SIGTERM) is required") }
        guard clients > 0, jitter >= 0, maxBackoff >= jitter, timeout > 0, settle >= 0, leavers >= 0 else {
            throw ValidationError("--clients must be positive; --jitter, --settle, --leavers not negative; --max-backoff ≥ --jitter")
        }
    }

    /// The watcher's view, on its harness's loop thread.
    final class Watch {
        var online: [Bool]
        var seen: [Bool]
        var shownOffline: [Bool]
        var events = 0
        var offlineEvents = 0
        var replies = 0
        var storm = false
        init(_ n: Int) {
            online = Array(repeating: false, count: n)
            seen = Array(repeating: false, count: n)
            shownOffline = Array(repeating: false, count: n)
        }

        func event(_ i: Int, _ isOnline: Bool) {
            events += 1
            seen[i] = true
            if !isOnline {
                offlineEvents += 1
                if storm { shownOffline[i] = true }
            }
            online[i] = isOnline
        }

        func offline(_ range: Range<Int>) -> Int { online[range].filter { !$0 }.count }
        func stillOnline(_ range: Range<Int>) -> Int { online[range].filter { $0 }.count }
    }

    /// Reconnect attempts by due time (a binary min-heap of (due ns, client index)).
    struct DueHeap {
        private var items: [(UInt64, Int)] = []
        var count: Int { items.count }

        mutating func push(_ due: UInt64, _ index: Int) {
            items.append((due, index))
            var i = items.count - 1
            while i > 0 {
                let parent = (i - 1) / 2
                guard items[parent].0 > items[i].0 else { break }
                items.swapAt(parent, i)
                i = parent
            }
        }

        mutating func popDue(_ now: UInt64) -> Int? {
            guard let first = items.first, first.0 <= now else { return nil }
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var i = 0
                while true {
                    let l = 2 * i + 1, r = l + 1
                    var m = i
                    if l < items.count, items[l].0 < items[m].0 { m = l }
                    if r < items.count, items[r].0 < items[m].0 { m = r }
                    if m == i { break }
                    items.swapAt(i, m)
                    i = m
                }
            }
            return first.1
        }
    }

    func run() throws {
        let run = common.run
        let keys = try common.keys()
        let urlA = try common.wsURL
        guard let urlB = URL(string: targetUrl), urlB.scheme == "ws" || urlB.scheme == "wss" else {
            throw ValidationError("--target-url must be ws:// or wss://")
        }
        let pidA = common.serverPid!
        let harness = try Harness(url: urlA, socketLoops: clientLoops)
        let watchHarness = try Harness(url: urlB)   // its own loop thread: the storm does not delay its reading
        let prefix = "bench_rc_\(run)_"
        let userIDs = (0..<clients).map { prefix + String(format: "%05d", $0) }
        let index = Dictionary(uniqueKeysWithValues: userIDs.enumerated().map { ($1, $0) })
        let t = monoNow()
        let watcherID = "bench_rcw_\(run)"   // outside `prefix`: not one of the users counted
        let tokens = mintTokens(keys, users: userIDs + [watcherID])
        Console.print("minted \(tokens.count) RS256 tokens in \(fmt(seconds(monoNow() - t), 2)) s")
        let conns = (0..<clients).map { Conn(index: $0, userID: userIDs[$0], token: tokens[$0], harness: harness) }

        // 1. Everyone onto instance A.
        let ramp = harness.openAll(conns, concurrency: common.connectConcurrency, timeout: rampTimeout)
        Console.print("\(ramp.opened) of \(clients) connected to instance A in \(fmt(ramp.seconds, 1)) s (\(fmtInt(Double(ramp.opened) / max(ramp.seconds, 1e-9)))/s)")
        guard ramp.opened == clients else {
            throw BenchError("only \(ramp.opened) of \(clients) clients connected to instance A (\(ramp.failed) failed\(ramp.timedOut ? ", timed out" : ""))")
        }

        // 2. The watcher, on B, subscribes to everyone (at most 1000 ids per request).
        let watch = Watch(clients)
        let watcher = Conn(index: -1, userID: watcherID, token: tokens[clients], harness: watchHarness)
        var watcherLost: String?
        watchHarness.onClosed = { c, _ in watcherLost = "\(c.closeCode.map(String.init) ?? "-") \(c.closeReason)" }
        watchHarness.onFrame = { _, frame in
            switch frame["type"] as? String {
            case "presence":
                if let id = frame["userId"] as? String, let i = index[id], let on = frame["isOnline"] as? Bool { watch.event(i, on) }
            case "ok":
                guard (frame["id"] as? String)?.hasPrefix("sub") == true, let data = frame["data"] as? [String: Any],
                      let users = data["users"] as? [[String: Any]] else { return }
                watch.replies += 1
                // An event can overtake the reply: then it is newer than the snapshot.
                for u in users {
                    if let id = u["userId"] as? String, let i = index[id], !watch.seen[i], let on = u["isOnline"] as? Bool {
                        watch.seen[i] = true
                        watch.online[i] = on
                    }
                }
            default: break
            }
        }
        guard watchHarness.openAll([watcher], concurrency: 1, timeout: 60).opened == 1 else {
            throw BenchError("the watcher could not connect to instance B")
        }
        let chunks = stride(from: 0, to: clients, by: 1000).map { Array(userIDs[$0..<min($0 + 1000, clients)]) }
        watchHarness.sync {
            for (k, chunk) in chunks.enumerated() {
                let ids = chunk.map { "\"\($0)\"" }.joined(separator: ",")
                watcher.send("{\"type\":\"presence.subscribe\",\"id\":\"sub\(k)\",\"userIds\":[\(ids)]}")
            }
        }
        guard watchHarness.waitUntil(timeout: 60, { watch.replies == chunks.count }) else {
            throw BenchError("the watcher's presence.subscribe got \(watchHarness.sync { watch.replies }) of \(chunks.count) replies")
        }
        // Everyone is connected: the watcher must say so before the restart.
        watchHarness.waitUntil(timeout: settle) { watch.offline(0..<clients) == 0 }
        let offlineBefore = watchHarness.sync { watch.offline(0..<clients) }
        Console.print("watcher: \(clients - offlineBefore) of \(clients) shown online before the restart")

        // 3. The database's background (heartbeats, change-stream getMores) while nothing happens.
        sleepSeconds(1)
        let db0 = opcounters()
        let b0 = monoNow()
        sleepSeconds(3)
        let db1 = opcounters()
        let b1 = monoNow()
        let metrics1 = serverMetrics(urlB)

        // 4. SIGTERM to A; every client it closes reconnects to B.
        var heap = DueHeap()
        var phase = 0            // 0 storm, 1 leaving
        var attempts = 0
        var failedAttempts: [String: Int] = [:]
        var lostFor: [String: Int] = [:]
        var closesFromA: [String: Int] = [:]
        var droppedOnB = 0
        var back = 0
        var firstLossNs: UInt64 = 0
        var lastLossNs: UInt64 = 0
        var lastWelcomeNs: UInt64 = 0
        var connectLatency = Latency()   // attempt → welcome
        var backLatency = Latency()      // connection lost → welcome again
        // Who is late when an attempt ends 4001 (no auth read within the server's deadline, which
        // starts as it sends the 101): attempt → 101 read here, 101 read → auth written here,
        // auth written → 4001 read here; the same first two steps of the attempts that were welcomed;
        // and this loop's own stalls (gaps between ticks meant to run every millisecond).
        var timeoutTo101 = Latency(), timeoutToAuth = Latency(), timeoutAuthToClose = Latency()
        var okTo101 = Latency(), okToAuth = Latency(), okAuthToWelcome = Latency()
        var okToIssued = Latency(), okIssuedTo101 = Latency()
        var loopGap = Latency()
        var lastTickNs: UInt64 = 0
        func delay(_ cap: Double) -> UInt64 { UInt64(Double.random(in: 0...max(cap, 0)) * 1e9) }
        harness.onClosed = { c, wasOpen in
            guard phase == 0 else { return }
            let now = monoNow()
            let key = c.closeCode.map { "\($0)" } ?? "no close frame"
            if wasOpen {
                // lws 4.1's client parser reports 1012 as 1002; the reason says "restarting".
                if c.url == nil { closesFromA["\(key) \(c.closeReason.prefix(40))", default: 0] += 1 } else { droppedOnB += 1; back -= 1 }
                if firstLossNs == 0 { firstLossNs = now }
                lastLossNs = now
                c.url = urlB
                c.attempts = 0
                c.lostNs = now
                heap.push(now + delay(jitter), c.index)
                return
            }
            failedAttempts["\(key) \(c.closeReason.prefix(40))", default: 0] += 1
            if c.closeCode == 4001, c.connectedNs > 0 {
                let wrote = c.socket?.firstWriteNs ?? 0
                timeoutTo101.record(from: c.startedNs, to: c.connectedNs)
                if wrote > 0 { timeoutToAuth.record(from: c.connectedNs, to: wrote); timeoutAuthToClose.record(from: wrote, to: now) }
            }
            // Not reconnecting after these (protocol/README.md, Reconnecting).
            if [4003, 4005, 4006].contains(c.closeCode ?? 0) { lostFor[key, default: 0] += 1; return }
            c.attempts += 1
            heap.push(now + delay(min(maxBackoff, jitter * pow(2, Double(c.attempts)))), c.index)
        }
        harness.onWelcome = { c in
            guard c.url != nil else { return }
            back += 1
            lastWelcomeNs = c.welcomedNs
            connectLatency.record(from: c.startedNs, to: c.welcomedNs)
            backLatency.record(from: c.lostNs, to: c.welcomedNs)
            let wrote = c.socket?.firstWriteNs ?? 0
            okTo101.record(from: c.startedNs, to: c.connectedNs)
            if let issued = c.socket?.connectIssuedNs, issued > 0 {
                okToIssued.record(from: c.startedNs, to: issued)
                okIssuedTo101.record(from: issued, to: c.connectedNs)
            }
            if wrote > 0 { okToAuth.record(from: c.connectedNs, to: wrote); okAuthToWelcome.record(from: wrote, to: c.welcomedNs) }
        }
        let ticker = Ticker(harness: harness, periodMicros: 1000) { now in
            if lastTickNs > 0, phase == 0 { loopGap.record(from: lastTickNs, to: now) }
            lastTickNs = now
            while let i = heap.popDue(now) {
                attempts += 1
                harness.start(conns[i])
            }
            return true
        }
        watchHarness.sync { watch.storm = true }
        let cpu = CPUMeter(serverPid: targetPid, dbPid: common.dbPid)
        cpu.start()
        let t0 = monoNow()
        kill(pidA, SIGTERM)
        var aExitNs: UInt64?
        var lastReport = t0
        var allBack = false
        while true {
            let (n, lost) = harness.sync { (back, lostFor.values.reduce(0, +)) }
            let now = monoNow()
            if aExitNs == nil, !Proc.alive(pidA) { aExitNs = now }
            if n + lost >= clients { allBack = lost == 0; break }
            if seconds(now - t0) > timeout { break }
            if now - lastReport >= 10_000_000_000 {
                lastReport = now
                Console.print("  … \(n) of \(clients) back on instance B after \(Int(seconds(now - t0))) s")
            }
            sleepSeconds(0.02)
        }
        let (backCount, lastWelcome, firstLoss, lastLoss) = harness.sync { (back, lastWelcomeNs, firstLossNs, lastLossNs) }
        let backSeconds = lastWelcome > t0 ? seconds(lastWelcome - t0) : seconds(monoNow() - t0)
        Console.print("\(backCount) of \(clients) back on instance B \(fmt(backSeconds, 1)) s after SIGTERM\(allBack ? "" : " (not all)")")

        // 5. Presence once everyone is back: the watcher should show all of them online.
        let settledOnline = watchHarness.waitUntil(timeout: settle) { watch.offline(0..<clients) == 0 }
        let presenceLag = settledOnline ? seconds(monoNow() - max(lastWelcome, t0)) : nil
        let offlineAfterBack = watchHarness.sync { watch.offline(0..<clients) }
        let db2 = opcounters()
        let metrics2 = serverMetrics(urlB)
        let usage = cpu.stop()
        let window = seconds(monoNow() - t0)
        while aExitNs == nil, seconds(monoNow() - t0) < timeout + 30 {
            if !Proc.alive(pidA) { aExitNs = monoNow() }
            sleepSeconds(0.05)
        }

        // 6. After A's instance record is gone (A removed it, or B swept it): still all online?
        var instanceGone: Double?
        var instancesLeft: [[String: Any]] = []
        if pymongo.mongoUri != nil {
            (instanceGone, instancesLeft) = waitForOneInstance()
            sleepSeconds(2)
        }
        let offlineFinal = watchHarness.sync { watch.offline(0..<clients) }
        let (shownOffline, events, offlineEvents) = watchHarness.sync { (watch.shownOffline.filter { $0 }.count, watch.events, watch.offlineEvents) }
        let dbUsers = usersInDatabase(prefix)

        // 7. Leavers close: the watcher must show them offline.
        let leaving = min(leavers, clients)
        harness.sync { phase = 1 }
        ticker.stop()
        var onlineAfterLeft = 0
        var leaveLag: Double?
        if leaving > 0 {
            let left = Array(conns[..<leaving])
            harness.closeAll(left, timeout: 60)
            let closedAt = monoNow()
            if watchHarness.waitUntil(timeout: leaveWait, poll: 0.05, { watch.stillOnline(0..<leaving) == 0 }) { leaveLag = seconds(monoNow() - closedAt) }
            onlineAfterLeft = watchHarness.sync { watch.stillOnline(0..<leaving) }
        }
        let dbLeavers = leaving > 0 ? usersInDatabase(prefix, first: leaving) : nil
        let lostWatcher = watchHarness.sync { watcherLost }
        let (failures, lost, fromA, dropped, attemptCount) = harness.sync { (failedAttempts, lostFor, closesFromA, droppedOnB, attempts) }
        let (connect, backLat) = harness.sync { (connectLatency, backLatency) }
        let timeline = harness.sync { [
            "timed_out_4001": ["attempt_to_101": timeoutTo101.json, "101_to_auth_written": timeoutToAuth.json, "auth_written_to_close": timeoutAuthToClose.json],
            "welcomed": ["attempt_to_connect_issued": okToIssued.json, "connect_issued_to_101": okIssuedTo101.json, "attempt_to_101": okTo101.json, "101_to_auth_written": okToAuth.json, "auth_written_to_welcome": okAuthToWelcome.json],
            "generator_loop_gap": loopGap.json,
        ] }
        let (t101, tAuth, tGap) = harness.sync { (timeoutTo101, timeoutToAuth, loopGap) }

        // Database operations in the window SIGTERM → everyone back and shown online, per client back.
        var dbOps: [String: Any] = [:]
        var opsPerConnect: Double?
        var opsText = "database operations not read (no --mongo-uri)"
        if let db0, let db1, let db2 {
            let background = db1.values.reduce(0, +) - db0.values.reduce(0, +)
            let backgroundPerSecond = Double(background) / max(seconds(b1 - b0), 1e-9)
            var delta: [String: Int] = [:]
            for (k, v) in db2 { delta[k] = v - (db1[k] ?? 0) }
            let total = delta.values.reduce(0, +)
            let net = Double(total) - backgroundPerSecond * window
            let per = Double(total) / Double(max(backCount, 1))
            opsPerConnect = max(0, net) / Double(max(backCount, 1))
            dbOps = ["window_s": Latency.round(window), "total": total, "by_bucket": delta,
                     "background_per_s": Latency.round(backgroundPerSecond),
                     "per_connect_gross": Latency.round(per), "per_connect_net": Latency.round(opsPerConnect!)]
            opsText = "\(fmt(opsPerConnect!, 2)) database operations per connect (opcounters: \(fmtInt(Double(total))) in \(fmt(window, 0)) s — "
                + delta.filter { $0.value > 0 }.sorted { $0.value > $1.value }.map { "\($0.key) \(fmtInt(Double($0.value)))" }.joined(separator: ", ")
                + "; less the background \(fmtInt(backgroundPerSecond))/s)"
        }
        var serverOps: [String: Double] = [:]
        if let metrics1, let metrics2 {
            for (k, v) in metrics2 where v - (metrics1[k] ?? 0) > 0 { serverOps[k] = Latency.round((v - (metrics1[k] ?? 0)) / Double(max(backCount, 1))) }
        }
        let serverOpsText = serverOps.isEmpty ? "" : "; B's own requests per connect: " + serverOps.sorted { $0.value > $1.value }.map { "\($0.key) \(fmt($0.value, 2))" }.joined(separator: ", ")
        let presenceErrors = offlineFinal + onlineAfterLeft

        var report = ScenarioReport(scenario: "reconnect")
        report.parameters = ["clients": clients, "client_loops": clientLoops, "jitter_s": jitter, "max_backoff_s": maxBackoff, "settle_s": settle,
                             "leavers": leaving, "connect_concurrency_first_ramp": common.connectConcurrency,
                             "restart": "SIGTERM to instance A; clients move to instance B on the same database"]
        report.results = [
            "back": backCount, "all_back": allBack, "back_seconds": Latency.round(backSeconds),
            "first_ramp_connects_per_s": Latency.round(Double(ramp.opened) / max(ramp.seconds, 1e-9)),
            "closed_by_a_within_s": Latency.round(firstLoss > 0 ? seconds(lastLoss - firstLoss) : 0),
            "a_exit_s": aExitNs.map { Latency.round(seconds($0 - t0)) } as Any? ?? NSNull(),
            "closes_from_a": fromA, "dropped_on_b": dropped, "attempts": attemptCount, "failed_attempts": failures, "lost": lost,
            "connect_latency": connect.json, "back_latency": backLat.json, "attempt_timeline": timeline,
            "presence": ["offline_before_restart": offlineBefore, "offline_after_back": offlineAfterBack,
                         "all_shown_online_after_s": presenceLag.map(Latency.round) as Any? ?? NSNull(),
                         "a_instance_gone_after_s": instanceGone.map(Latency.round) as Any? ?? NSNull(), "instances_left": instancesLeft,
                         "offline_final": offlineFinal, "online_after_left": onlineAfterLeft,
                         "leavers_shown_offline_after_s": leaveLag.map(Latency.round) as Any? ?? NSNull(),
                         "errors": presenceErrors, "shown_offline_during_restart": shownOffline,
                         "events": events, "offline_events": offlineEvents, "watcher_lost": lostWatcher as Any? ?? NSNull(),
                         "database": dbUsers as Any? ?? NSNull(), "database_leavers": dbLeavers as Any? ?? NSNull()],
            "db_operations": dbOps, "server_b_requests_per_connect": serverOps,
            "cpu_percent": usage, "errors": harness.sync { harness.errorCodes },
        ]
        report.parametersText = "\(fmtInt(Double(clients))) clients on instance A; SIGTERM; each reconnects to instance B (same database) after a random 0–\(fmt(jitter, 1)) s, "
            + "backoff doubling to \(fmt(maxBackoff, 0)) s; a watcher on B follows all \(fmtInt(Double(clients))); \(leaving) leave at the end"
        let failedTotal = failures.values.reduce(0, +)
        let failText = failedTotal == 0 ? "0 failed attempts" : "\(failedTotal) failed attempts (" + failures.sorted { $0.value > $1.value }.prefix(3).map { "\($0.key) ×\($0.value)" }.joined(separator: "; ") + ")"
        report.resultsText = (allBack ? "all \(fmtInt(Double(clients))) back" : "\(fmtInt(Double(backCount))) of \(fmtInt(Double(clients))) back")
            + " \(fmt(backSeconds, 1)) s after SIGTERM (\(fmtInt(Double(backCount) / max(backSeconds, 1e-9)))/s; A closed them within \(fmt(firstLoss > 0 ? seconds(lastLoss - firstLoss) : 0, 1)) s"
            + (aExitNs.map { ", exited after \(fmt(seconds($0 - t0), 1)) s" } ?? "") + "); "
            + "connect p50 \(connect.json["p50_ms"] ?? "-") / p99 \(connect.json["p99_ms"] ?? "-") ms, lost→back p50 \(backLat.json["p50_ms"] ?? "-") / p99 \(backLat.json["p99_ms"] ?? "-") ms; \(failText); "
            + "presence errors \(presenceErrors) (\(offlineFinal) shown offline though back, \(onlineAfterLeft) of \(leaving) online \(leaveLag == nil ? "\(fmt(leaveWait, 0)) s " : "")after leaving"
            + (leaveLag.map { ", all shown offline \(fmt($0, 1)) s after leaving" } ?? "")
            + (pymongo.mongoUri == nil ? "" : "; checked after A's instance record was " + (instanceGone.map { "gone, \(fmt($0, 0)) s after the reconnect phase" } ?? "still there"))
            + "; \(shownOffline) shown offline for a while during the restart); "
            + opsText + serverOpsText + "; cpu \(CPUMeter.text(usage))"
        report.target = "10,000 clients back within 20 s of a restart, 0 presence errors, ≤ 0.2 database operations per connect"
        let met = allBack && backSeconds <= 20 && presenceErrors == 0 && (opsPerConnect ?? .infinity) <= 0.2 && lostWatcher == nil
        var misses: [String] = []
        if !allBack { misses.append("not all back") } else if backSeconds > 20 { misses.append("\(fmt(backSeconds, 0)) s") }
        if presenceErrors > 0 { misses.append("\(presenceErrors) presence errors") }
        if let opsPerConnect, opsPerConnect > 0.2 { misses.append("\(fmt(opsPerConnect, 1)) ops/connect") }
        report.verdict = (met ? "met" : "not met" + (misses.isEmpty ? "" : ": " + misses.joined(separator: ", ")))
            + (clients < 10_000 ? " (short run: \(fmtInt(Double(clients))) of 10,000 clients)" : "")
        if offlineBefore > 0 { report.notes.append("\(offlineBefore) users shown offline before the restart") }
        if let lostWatcher { report.notes.append("the watcher's connection closed: \(lostWatcher)") }
        if dropped > 0 { report.notes.append("\(dropped) connections to B closed again during the storm") }
        if instancesLeft.count > 1 {
            report.notes.append("instance A not gone \(fmt(instanceWait, 0)) s after the reconnect phase; instance records left (B's included): " + instancesLeft.map { "\($0["connection_records"] ?? "?") records, heartbeat \($0["heartbeat_age_s"] ?? "?") s ago" }.joined(separator: "; "))
        }
        if t101.count > 0 {
            report.notes.append("the \(t101.count) attempts closed 4001: attempt → 101 read \(t101.text); 101 read → auth written \(tAuth.text); generator loop stalls \(tGap.text)")
        }
        if !lost.isEmpty { report.notes.append("gave up (no reconnect after): \(lost.map { "\($0.key) ×\($0.value)" }.joined(separator: ", "))") }
        report.emit(jsonOut: common.jsonOut)

        if common.killServerAtEnd, let targetPid {
            kill(targetPid, SIGKILL)
            sleepSeconds(0.2)
        } else {
            harness.closeAll(conns, timeout: 30)
            watchHarness.closeAll([watcher], timeout: 10)
        }
        harness.shutdown()
        watchHarness.shutdown()
    }

    // MARK: the database and the server's counters

    /// serverStatus().opcounters of the database (every client's commands, this read's included).
    private func opcounters() -> [String: Int]? {
        let script = """
        import json, sys, pymongo
        client = pymongo.MongoClient(sys.argv[1], directConnection=True, serverSelectionTimeoutMS=5000)
        print(json.dumps(client.admin.command("serverStatus")["opcounters"]))
        """
        return pymongo.run(script)?.compactMapValues { $0 as? Int }
    }

    /// Waits until one `instances` record is left (B's): seconds waited (nil when it timed out), and
    /// the records left with their connection records and heartbeat age.
    private func waitForOneInstance() -> (Double?, [[String: Any]]) {
        let script = """
        import datetime, json, sys, time, pymongo
        client = pymongo.MongoClient(sys.argv[1], directConnection=True, serverSelectionTimeoutMS=5000, tz_aware=True)
        db, limit, start = client.get_default_database(), float(sys.argv[2]), time.monotonic()
        while db.instances.count_documents({}) > 1 and time.monotonic() - start < limit:
            time.sleep(0.5)
        now = datetime.datetime.now(datetime.timezone.utc)
        left = [{"id": i["_id"], "heartbeat_age_s": round((now - i["heartbeatAt"]).total_seconds(), 1),
                 "connection_records": db.connections.count_documents({"instanceId": i["_id"]})} for i in db.instances.find()]
        print(json.dumps({"left": left, "waited": time.monotonic() - start}))
        """
        guard let answer = pymongo.run(script, [String(instanceWait)]) else { return (nil, []) }
        let left = answer["left"] as? [[String: Any]] ?? []
        return (left.count <= 1 ? answer["waited"] as? Double : nil, left)
    }

    /// The run's users as stored (the first `first` of them when given): how many, how many online, and
    /// their connection records.
    private func usersInDatabase(_ prefix: String, first: Int? = nil) -> [String: Any]? {
        let script = """
        import json, re, sys, pymongo
        client = pymongo.MongoClient(sys.argv[1], directConnection=True, serverSelectionTimeoutMS=5000)
        db = client.get_default_database()
        prefix, first = sys.argv[2], int(sys.argv[3])
        match = {"$regex": "^" + re.escape(prefix)} if first < 0 else {"$in": [prefix + "%05d" % i for i in range(first)]}
        users = list(db.users.find({"clerkId": match}, {"isOnline": 1}))
        print(json.dumps({"users": len(users), "online": sum(1 for u in users if u.get("isOnline")),
                          "connection_records": db.connections.count_documents({"userId": match})}))
        """
        return pymongo.run(script, [prefix, String(first ?? -1)])
    }

    /// B's `chat_db_operation_duration_seconds_count` by operation (its own database requests).
    private func serverMetrics(_ ws: URL) -> [String: Double]? {
        let http = HTTPConnection(host: ws.host ?? "127.0.0.1", port: UInt16(ws.port ?? 80))
        defer { http.close() }
        guard let (status, body) = try? http.get(path: "/metrics"), status == 200 else { return nil }
        var out: [String: Double] = [:]
        let family = "chat_db_operation_duration_seconds_count{"
        for line in String(decoding: body, as: UTF8.self).split(separator: "\n") where line.hasPrefix(family) {
            guard let start = line.range(of: "operation=\""), let end = line[start.upperBound...].firstIndex(of: "\""),
                  let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            out[String(line[start.upperBound..<end]), default: 0] += value
        }
        return out
    }
}
