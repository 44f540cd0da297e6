import ArgumentParser
import ClerkAuth
import Foundation

/// Creates (once) the key pair the benchmarked server trusts, and prints its public key (CLERK_JWT_KEY).
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create the RS256 key pair in --dir if missing (DevelopmentKeys.generate) and print the public key.")

    @Option(help: "Directory for private.pem and public.pem.")
    var dir: String = ".dev-keys"

    func run() throws {
        let keys = try DevelopmentKeys.loadOrCreate(in: URL(fileURLWithPath: dir))
        Console.print(keys.publicKeyPEM, terminator: keys.publicKeyPEM.hasSuffix("\n") ? "" : "\n")
    }
}

/// N authenticated idle connections: the server's resident memory per connection and the time to open them.
struct Idle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "N idle authenticated connections: server RSS growth per connection (needs --server-pid) and connect time.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Idle connections to open.")
    var connections: Int = 10_000
    @Option(help: "Connections opened and kept before the baseline is read (first-use allocations stay out of the figure).")
    var warmup: Int = 100
    @Option(help: "Seconds to wait after the last welcome before reading the memory again.")
    var settle: Double = 3
    @Option(help: "Give up on the ramp after this many seconds.")
    var timeout: Double = 240

    func run() throws {
        let run = common.run
        let keys = try common.keys()
        let harness = try Harness(url: try common.wsURL)
        let total = connections + warmup
        let users = (0..<total).map { "bench_idle_\(run)_\($0)" }
        var t = monoNow()
        let tokens = mintTokens(keys, users: users)
        let mintSeconds = seconds(monoNow() - t)
        Console.print("minted \(total) RS256 tokens in \(fmt(mintSeconds, 2)) s")
        let conns = (0..<total).map { Conn(index: $0, userID: users[$0], token: tokens[$0], harness: harness) }

        let warm = harness.openAll(Array(conns[..<warmup]), concurrency: common.connectConcurrency, timeout: 60)
        sleepSeconds(1)
        let before = common.serverPid.flatMap(Proc.rssKiB)
        let cpu = CPUMeter(serverPid: common.serverPid, dbPid: common.dbPid)
        cpu.start()
        t = monoNow()
        let ramp = harness.openAll(Array(conns[warmup...]), concurrency: common.connectConcurrency, timeout: timeout)
        let usage = cpu.stop()
        Console.print("opened \(ramp.opened) of \(connections) in \(fmt(ramp.seconds, 2)) s (\(ramp.failed) failed\(ramp.timedOut ? ", timed out" : ""))")
        sleepSeconds(settle)
        let after = common.serverPid.flatMap(Proc.rssKiB)
        let stillOpen = harness.sync { conns[warm.opened...].filter { $0.state == .open }.count }
        let firstFailure = harness.sync { conns.first { $0.state == .closed }.map { "\($0.firstError ?? "") \($0.closeReason)" } }
        let connectLatency = harness.sync { harness.connectLatency }
        // The connect rate over each quarter of the ramp: does it hold as the server (and database) fill up?
        let welcomes = harness.sync { harness.rampWelcomes }
        var quarters: [Double] = []
        if welcomes.count >= 8 {
            var from = t
            for q in 1...4 {
                let upTo = welcomes[welcomes.count * q / 4 - 1]
                quarters.append(Latency.round(Double(welcomes.count / 4) / max(seconds(upTo - from), 1e-9)))
                from = upTo
            }
        }
        let closesDuring = harness.sync { harness.closeReasons }

        var report = ScenarioReport(scenario: "idle")
        report.parameters = ["connections": connections, "warmup": warmup, "connect_concurrency": common.connectConcurrency,
                             "settle_s": settle]
        var perConnection: Double?
        if let before, let after, ramp.opened > 0 { perConnection = Double(after - before) / Double(ramp.opened) }
        report.results = [
            "opened": ramp.opened, "failed": ramp.failed, "still_open_after_settle": stillOpen,
            "connect_seconds": Latency.round(ramp.seconds), "connects_per_s": Latency.round(Double(ramp.opened) / max(ramp.seconds, 1e-9)),
            "connect_latency": connectLatency.json, "connects_per_s_by_quarter": quarters, "timed_out": ramp.timedOut, "token_mint_seconds": Latency.round(mintSeconds),
            "server_rss_before_kib": before as Any? ?? NSNull(), "server_rss_after_kib": after as Any? ?? NSNull(),
            "server_kib_per_connection": perConnection.map(Latency.round) as Any? ?? NSNull(),
            "cpu_percent": usage, "errors": harness.errorCodes,
        ]
        report.parametersText = "\(fmtInt(Double(connections))) connections (+\(warmup) warm-up), \(common.connectConcurrency) opening at once"
        let memory = perConnection.map { "\(fmt($0 / 1, 2)) KiB/conn server RSS (\(fmtInt(Double(before ?? 0) / 1024)) → \(fmtInt(Double(after ?? 0) / 1024)) MiB)" } ?? "RSS not read (no --server-pid)"
        let opening = ramp.timedOut ? "only \(fmtInt(Double(ramp.opened))) open after \(fmt(ramp.seconds, 0)) s (timed out)" : "all open in \(fmt(ramp.seconds, 1)) s"
        report.resultsText = "\(memory); \(opening) (\(fmtInt(Double(ramp.opened) / max(ramp.seconds, 1e-9))) conn/s; by quarter \(quarters.map { fmtInt($0) }.joined(separator: "/")); "
            + "connect p50 \(connectLatency.json["p50_ms"] ?? "-") / p99 \(connectLatency.json["p99_ms"] ?? "-") ms); \(stillOpen) still open after \(fmt(settle, 0)) s; failed \(ramp.failed); cpu \(CPUMeter.text(usage))"
        report.target = "10,000 idle connections at ≤ 8 KiB server memory each"
        let memOK = (perConnection ?? .infinity) <= 8
        let allOK = ramp.failed == 0 && !ramp.timedOut && stillOpen == ramp.opened
        let met = memOK && allOK
        report.verdict = (met ? "met" : "not met") + (connections < 10_000 ? " (short run: \(fmtInt(Double(connections))) of 10,000 connections)" : "")
        if let firstFailure { report.notes.append("first failure: \(firstFailure)") }
        if !closesDuring.isEmpty { report.notes.append("closes before the end: \(closesDuring.sorted { $0.value > $1.value }.prefix(4).map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))") }
        report.emit(jsonOut: common.jsonOut)
        common.finish(harness, conns)
    }
}
