import ArgumentParser
import Foundation

/// Pairs exchanging direct messages at a fixed total rate: send-to-ack (stored) and send-to-delivery latency.
struct DirectMessages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dm",
        abstract: "P pairs exchanging direct messages at a fixed total rate R msg/s for D s: ack and delivery latency.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Pairs of users (two connections each).")
    var pairs: Int = 100
    @Option(help: "Total messages per second over all pairs.")
    var rate: Double = 1000
    @Option(help: "Seconds of sending.")
    var duration: Double = 10
    @Option(help: "Most seconds to wait for the last acks and deliveries.")
    var drain: Double = 20

    func validate() throws {
        guard pairs >= 1, rate > 0, duration > 0 else { throw ValidationError("--pairs, --rate and --duration must be positive") }
    }

    func run() throws {
        let run = common.run
        let keys = try common.keys()
        let harness = try Harness(url: try common.wsURL)
        let users = (0..<(2 * pairs)).map { "bench_dm_\(run)_\($0)" }
        let tokens = mintTokens(keys, users: users)
        let conns = users.indices.map { Conn(index: $0, userID: users[$0], token: tokens[$0], harness: harness) }
        let ramp = harness.openAll(conns, concurrency: common.connectConcurrency, timeout: 120)
        Console.print("opened \(ramp.opened) of \(conns.count) in \(fmt(ramp.seconds, 2)) s")
        guard ramp.failed == 0, !ramp.timedOut else {
            throw BenchError("could not open every connection (\(ramp.failed) failed): \(harness.errorSummary)")
        }

        var conversations = [String?](repeating: nil, count: pairs)
        var openErrors = 0
        var schedule = Schedule(startNs: 0, rate: rate, total: 0)
        var acked = 0
        var refused = 0
        var delivered = 0
        var ackLatency = Latency()
        var deliveryLatency = Latency()
        harness.onFrame = { _, frame in
            guard let id = frame["id"] as? String else { return }
            let type = frame["type"] as? String
            if id.hasPrefix("open-"), let p = Int(id.dropFirst(5)) {
                if type == "ok" {
                    conversations[p] = ((frame["data"] as? [String: Any])?["conversation"] as? [String: Any])?["conversationId"] as? String
                } else { openErrors += 1 }
                return
            }
            guard let k = Int(id) else { return }
            if type == "ok" {
                acked += 1
                ackLatency.record(from: schedule.intended(k), to: monoNow())
            } else if type == "error" {
                refused += 1
            }
        }
        harness.onBench = { c, sent, tag, now in
            guard tag != c.index else { return }   // the sender's own echo
            delivered += 1
            deliveryLatency.record(from: sent, to: now)
        }
        harness.sync {
            for p in 0..<pairs { conns[2 * p].send("{\"type\":\"conversation.direct\",\"id\":\"open-\(p)\",\"userId\":\"\(users[2 * p + 1])\"}") }
        }
        harness.waitUntil(timeout: 60) { conversations.allSatisfy { $0 != nil } || openErrors > 0 }
        let cids = harness.sync { conversations }
        guard cids.allSatisfy({ $0 != nil }) else {
            throw BenchError("conversation.direct failed for \(cids.filter { $0 == nil }.count) pairs: \(harness.errorSummary)")
        }
        Console.print("\(pairs) direct conversations open")
        sleepSeconds(0.5)

        let total = max(1, Int(rate * duration))
        let cpu = CPUMeter(serverPid: common.serverPid, dbPid: common.dbPid)
        cpu.start()
        let start = harness.sync { () -> Schedule in
            schedule = Schedule(startNs: monoNow() + 1_000_000, rate: rate, total: total)
            return schedule
        }
        var sent = 0
        let ticker = Ticker(harness: harness) { now in
            let due = start.due(at: now)
            while sent < due {
                let k = sent
                let p = k % pairs
                let sender = conns[2 * p + (k / pairs) % 2]
                sender.send("{\"type\":\"message.send\",\"id\":\"\(k)\",\"conversationId\":\"\(cids[p]!)\",\"clientId\":\"d\(run)-\(k)\",\"text\":\"\(BenchText.make(sentNs: start.intended(k), tag: sender.index))\"}")
                sent += 1
            }
            return sent < total
        }
        sleepSeconds(duration)
        while ticker.isRunning { sleepSeconds(0.01) }
        let sendEnd = monoNow()
        var lastSeen = -1
        var quietSince = monoNow()
        while seconds(monoNow() - sendEnd) < drain {
            let (d, a, r) = harness.sync { (delivered, acked, refused) }
            if a + r >= total && d >= a { break }
            if d + a != lastSeen { lastSeen = d + a; quietSince = monoNow() } else if seconds(monoNow() - quietSince) > 3 { break }
            sleepSeconds(0.05)
        }
        let elapsed = seconds(monoNow() - start.startNs)
        let usage = cpu.stop()
        let (d, a, r, ackLat, delLat, dropped) = harness.sync {
            (delivered, acked, refused, ackLatency, deliveryLatency, conns.filter { $0.state != .open }.count)
        }
        let closesDuring = harness.sync { harness.closeReasons }

        var report = ScenarioReport(scenario: "dm")
        report.parameters = ["pairs": pairs, "rate_msgs_per_s": rate, "duration_s": duration, "persistence": true]
        report.results = [
            "sent": total, "acked": a, "refused": r, "delivered": d, "missing_deliveries": a - d,
            "acked_per_s": Latency.round(Double(a) / max(elapsed, duration)),
            "ack_latency": ackLat.json, "delivery_latency": delLat.json, "connections_lost": dropped,
            "cpu_percent": usage, "errors": harness.errorCodes,
        ]
        report.parametersText = "\(pairs) pairs, \(fmtInt(rate)) msg/s for \(fmt(duration, 0)) s, persisted (ack after commit)"
        report.resultsText = "\(a) of \(total) acked (\(fmtInt(Double(a) / max(elapsed, duration))) msgs/s stored), \(d) delivered; send→ack \(ackLat.text); send→delivery \(delLat.text); "
            + "connections lost \(dropped); cpu \(CPUMeter.text(usage))"
        report.target = "1,000 msgs/s persisted and delivered, p99 send→delivery ≤ 20 ms"
        let met = rate >= 1000 && a == total && d == a && delLat.p99ms <= 20
        report.verdict = (met ? "met" : "not met") + (rate < 1000 ? " (short run: \(fmtInt(rate)) msg/s)" : "")
        if !closesDuring.isEmpty { report.notes.append("closes during the run: \(closesDuring.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))") }
        if !harness.errorCodes.isEmpty { report.notes.append("errors: \(harness.errorSummary)") }
        report.emit(jsonOut: common.jsonOut)
        common.finish(harness, conns)
    }
}
