import ArgumentParser
import ChatDomain
import Foundation

/// One group of M members; S of them publish at a fixed total rate; every member receives every message.
struct Fanout: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A group of M members, S senders at a fixed total rate R msg/s for D s: deliveries/s and delivery latency.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Group members (at most \(ChatRules.maxGroupMembers)); each is one connection.")
    var members: Int = 1000
    @Option(help: "Members that send.")
    var senders: Int = 10
    @Option(help: "Total messages per second over all senders.")
    var rate: Double = 100
    @Option(help: "Seconds of sending.")
    var duration: Double = 10
    @Option(help: "Most seconds to wait for the last deliveries after the last send.")
    var drain: Double = 20

    func validate() throws {
        guard (2...ChatRules.maxGroupMembers).contains(members) else { throw ValidationError("--members must be 2-\(ChatRules.maxGroupMembers) (a group's limit)") }
        guard (1...members).contains(senders) else { throw ValidationError("--senders must be 1-members") }
        guard rate > 0, duration > 0 else { throw ValidationError("--rate and --duration must be positive") }
    }

    func run() throws {
        let run = common.run
        let keys = try common.keys()
        let harness = try Harness(url: try common.wsURL)
        let users = (0..<members).map { "bench_fan_\(run)_\($0)" }
        let tokens = mintTokens(keys, users: users)
        let conns = (0..<members).map { Conn(index: $0, userID: users[$0], token: tokens[$0], harness: harness) }
        let ramp = harness.openAll(conns, concurrency: common.connectConcurrency, timeout: 120)
        Console.print("opened \(ramp.opened) of \(members) in \(fmt(ramp.seconds, 2)) s")
        guard ramp.failed == 0, !ramp.timedOut else {
            throw BenchError("could not open every member connection (\(ramp.failed) failed): \(harness.errorSummary)")
        }

        // The group: member 0 creates it with everyone else (one request: at most 1000 ids).
        var conversationID: String?
        var createError: String?
        var announced = 0
        var acked = 0
        var refused = 0
        var delivered = 0
        var lastDeliveryNs: UInt64 = 0
        var latency = Latency()
        var ackLatency = Latency()
        var schedule = Schedule(startNs: 0, rate: rate, total: 0)
        var measuring = false
        harness.onFrame = { c, frame in
            let type = frame["type"] as? String
            let id = frame["id"] as? String
            switch (type, id) {
            case ("ok", "create"?):
                conversationID = ((frame["data"] as? [String: Any])?["conversation"] as? [String: Any])?["conversationId"] as? String
            case ("error", "create"?):
                createError = "\(frame["code"] ?? ""): \(frame["message"] ?? "")"
            case ("conversation", _):
                announced += 1
            case ("ok", let id?):
                acked += 1
                if let k = Int(id) { ackLatency.record(from: schedule.intended(k), to: monoNow()) }
            case ("error", _?): refused += 1
            default: break
            }
        }
        harness.onBench = { _, sent, _, now in
            guard measuring else { return }
            delivered += 1
            lastDeliveryNs = now
            latency.record(from: sent, to: now)
        }
        let others = users.dropFirst().map { "\"\($0)\"" }.joined(separator: ",")
        harness.sync { conns[0].send("{\"type\":\"conversation.create\",\"id\":\"create\",\"name\":\"bench \(run)\",\"members\":[\(others)]}") }
        harness.waitUntil(timeout: 60) { conversationID != nil || createError != nil }
        guard let cid = harness.sync({ conversationID }) else {
            throw BenchError("conversation.create failed: \(harness.sync { createError } ?? "no answer")")
        }
        let everyoneKnows = harness.waitUntil(timeout: 30) { announced >= members }
        Console.print("group \(cid) created; \(harness.sync { announced }) members told\(everyoneKnows ? "" : " (not all)")")
        sleepSeconds(0.5)

        // Sending at a fixed rate; each text carries its intended send time.
        let total = max(1, Int(rate * duration))
        let cpu = CPUMeter(serverPid: common.serverPid, dbPid: common.dbPid)
        cpu.start()
        harness.sync {
            measuring = true
            schedule = Schedule(startNs: monoNow() + 1_000_000, rate: rate, total: total)
        }
        let start = harness.sync { schedule }
        var sent = 0
        let ticker = Ticker(harness: harness) { now in
            let due = start.due(at: now)
            while sent < due {
                let k = sent
                let sender = conns[k % senders]
                sender.send("{\"type\":\"message.send\",\"id\":\"\(k)\",\"conversationId\":\"\(cid)\",\"clientId\":\"f\(run)-\(k)\",\"text\":\"\(BenchText.make(sentNs: start.intended(k), tag: sender.index))\"}")
                sent += 1
            }
            return sent < total
        }
        sleepSeconds(duration)
        while ticker.isRunning { sleepSeconds(0.01) }
        let sendEnd = monoNow()
        // Drain: until every acked message reached every member, or nothing moves for 3 s.
        var lastSeen = -1
        var quietSince = monoNow()
        while seconds(monoNow() - sendEnd) < drain {
            let (d, a, r) = harness.sync { (delivered, acked, refused) }
            if a + r >= total && d >= a * members { break }
            if d != lastSeen { lastSeen = d; quietSince = monoNow() } else if seconds(monoNow() - quietSince) > 3 { break }
            sleepSeconds(0.05)
        }
        let usage = cpu.stop()
        let (d, a, r, lastNs, lat, ackLat, dropped) = harness.sync {
            (delivered, acked, refused, lastDeliveryNs, latency, ackLatency, conns.filter { $0.state != .open }.count)
        }
        let closesDuring = harness.sync { harness.closeReasons }

        let window = max(seconds(max(lastNs, start.startNs) - start.startNs), 1e-9)
        let perSecond = Double(d) / window
        let expected = a * members
        var report = ScenarioReport(scenario: "fanout")
        report.parameters = ["members": members, "senders": senders, "rate_msgs_per_s": rate, "duration_s": duration,
                             "offered_deliveries_per_s": rate * Double(members)]
        report.results = [
            "sent": total, "acked": a, "refused": r, "delivered": d, "expected_deliveries": expected,
            "missing_deliveries": expected - d, "delivered_per_s": perSecond.rounded(), "window_s": Latency.round(window),
            "delivery_latency": lat.json, "ack_latency": ackLat.json, "connections_lost": dropped, "cpu_percent": usage, "errors": harness.errorCodes,
        ]
        report.parametersText = "\(members) members, \(senders) senders, \(fmtInt(rate)) msg/s for \(fmt(duration, 0)) s (offered \(fmtInt(rate * Double(members))) deliveries/s)"
        report.resultsText = "\(fmtInt(perSecond)) delivered/s (\(fmtInt(Double(d))) of \(fmtInt(Double(expected))), \(a) of \(total) acked); delivery \(lat.text); send→ack \(ackLat.text); "
            + "connections lost \(dropped); cpu \(CPUMeter.text(usage))"
        report.target = "≥ 100,000 delivered msgs/s with p99 ≤ 50 ms"
        let met = perSecond >= 100_000 && lat.p99ms <= 50 && d >= expected && a == total
        report.verdict = (met ? "met" : "not met") + (duration < 60 ? " (short run: \(fmt(duration, 0)) s)" : "")
        if !closesDuring.isEmpty { report.notes.append("closes during the run: \(closesDuring.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))") }
        if !harness.errorCodes.isEmpty { report.notes.append("errors: \(harness.errorSummary)") }
        report.emit(jsonOut: common.jsonOut)
        common.finish(harness, conns)
    }
}
