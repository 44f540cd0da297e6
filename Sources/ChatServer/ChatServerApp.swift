import ClerkAuth
import Dispatch
import Foundation
import Logging
import MongoStore
import WebSocketServer

/// Composes the server: configuration -> database pool and monitor -> routes and channel -> the
/// libwebsockets service loop on the calling thread, until SIGINT/SIGTERM.
public final class ChatServerApp {
    public enum Lifecycle: Equatable {
        case starting
        case serving(port: Int)
        case draining(deadline: Date)
        case stopped
    }

    public let config: Config
    let logger: Logger
    let metrics = ServerMetrics.shared
    let database: Database
    let monitor: DatabaseMonitor
    private(set) var lifecycle: Lifecycle = .starting
    private var server: LwsServer!
    private var router: HTTPRouter!
    private var channel: ChatChannel!
    private var signalSources: [DispatchSourceSignal] = []
    private let say: (String) -> Void

    public init(config: Config, logger: Logger, say: @escaping (String) -> Void) {
        self.config = config
        self.logger = logger
        self.say = say
        database = Database(uri: config.mongoURI, workers: config.databaseWorkers,
                            queueLimit: config.databaseQueueLimit, logger: logger)
        monitor = DatabaseMonitor(database: database, logger: logger, announce: say)
    }

    /// Serves until a signal asks to stop; returns the process exit code.
    public func run() throws -> Int32 {
        var options = LwsServer.Options(host: config.host, port: config.port)
        options.tlsCertificatePath = config.tlsCertificatePath
        options.tlsKeyPath = config.tlsKeyPath
        channel = ChatChannel(logger: logger)
        var postToService: (@escaping () -> Void) -> Void = { _ in }
        let webhook = WebhookRoute(verifier: config.webhookVerifier, maxBodyBytes: config.webhookMaxBodyBytes,
                                   database: database, monitor: monitor, metrics: metrics, logger: logger, post: { postToService($0) })
        webhook.listener = channel
        router = HTTPRouter(monitor: monitor, metrics: metrics, webhook: webhook, webSocketPath: options.webSocketPath)
        server = try LwsServer(options: options, http: router, webSocket: channel, metrics: metrics, logger: logger)
        let server = self.server!
        postToService = { server.post($0) }

        for warning in config.warnings { logger.warning("\(warning)") }
        monitor.start()
        installSignalHandlers()
        lifecycle = .serving(port: server.port)
        banner(port: server.port)
        server.run()

        lifecycle = .stopped
        monitor.stop()
        database.shutdown(timeout: TimeInterval(config.shutdownGraceSeconds))
        logger.info("stopped")
        return 0
    }

    private func banner(port: Int) {
        let scheme = config.tlsCertificatePath == nil ? "http" : "https"
        if config.environment == .production {
            logger.info("Server running", metadata: ["port": "\(port)", "environment": "\(config.environment.rawValue)", "scheme": "\(scheme)"])
            return
        }
        let rule = String(repeating: "═", count: 44)
        say("╔\(rule)")
        say("║ 🚀 Server running on port \(port)")
        say("║ Environment: \(config.environment.rawValue)")
        say("║ \(scheme)://localhost:\(port)  (ws: /ws, webhooks: /api/webhooks/clerk)")
        say("╚\(rule)")
    }

    private func installSignalHandlers() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in
                guard let self else { return }
                self.server.post { self.beginShutdown(signal: sig) }
            }
            source.resume()
            signalSources.append(source)
        }
    }

    /// Service thread: stop accepting, tell clients to reconnect elsewhere, let work finish, then stop.
    private func beginShutdown(signal: Int32) {
        guard case .serving = lifecycle else { return }
        let grace = TimeInterval(config.shutdownGraceSeconds)
        lifecycle = .draining(deadline: Date().addingTimeInterval(grace))
        logger.info("shutting down", metadata: ["signal": "\(signal == SIGTERM ? "SIGTERM" : "SIGINT")"])
        channel.drain { [weak self] in self?.server.stop() }
        // A bound on draining, whatever is still in flight.
        DispatchQueue.global().asyncAfter(deadline: .now() + grace) { [weak self] in self?.server.stop() }
    }
}
