import ChatDomain
import ClerkAuth
import Dispatch
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// Composes the server: configuration -> database pool and monitor -> routes and channel -> the
/// libwebsockets service loop on the calling thread (the service thread), until SIGINT/SIGTERM.
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
    private var webhook: WebhookRoute!
    private var signalSources: [DispatchSourceSignal] = []
    private let say: @Sendable (String) -> Void
    private let loop = ServiceLoop()

    public init(config: Config, logger: Logger, say: @escaping @Sendable (String) -> Void) throws {
        self.config = config
        self.logger = logger
        self.say = say
        database = try Database(uri: config.mongoURI, workers: config.databaseWorkers,
                            queueLimit: config.databaseQueueLimit, logger: logger)
        monitor = DatabaseMonitor(database: database, logger: logger, announce: say)
    }

    /// Serves until a signal asks to stop; returns the process exit code.
    public func run() throws -> Int32 {
        var options = LwsServer.Options(host: config.host, port: config.port)
        options.tlsCertificatePath = config.tlsCertificatePath
        options.tlsKeyPath = config.tlsKeyPath
        let settings = config.channel
        options.pingIntervalSeconds = settings.pingIntervalSeconds
        options.hangupSeconds = settings.pingTimeoutSeconds
        options.maxInboundMessageBytes = settings.maxMessageBytes
        options.maxOutboundBytes = settings.maxOutboundBytes
        options.bodyTimeoutSeconds = config.webhookBodyTimeoutSeconds
        options.maxBodyBytesInFlight = config.webhookMaxInflightBytes
        options.slowConsumerCloseCode = CloseCode(rawValue: ChannelCloseCode.slowConsumer.rawValue)
        // This thread serves: everything below is made on it and owned by it.
        loop.enter()
        channel = ChatChannel(loop: loop, settings: settings, database: database, instanceID: instanceID, logger: logger)
        let webhook = WebhookRoute(verifier: config.webhookVerifier, maxBodyBytes: config.webhookMaxBodyBytes,
                                   database: database, monitor: monitor, metrics: metrics, logger: logger, loop: loop)
        self.webhook = webhook
        let devToken = config.devSigningKey.map { [loop] in
            DevTokenRoute(privateKeyPEM: $0, database: database, logger: logger, loop: loop)
        }
        router = HTTPRouter(monitor: monitor, metrics: metrics, webhook: webhook, webSocketPath: options.webSocketPath,
                            webApp: loadWebApp(), devToken: devToken)
        server = try LwsServer(options: options, loop: loop, http: router, webSocket: channel, metrics: metrics, logger: logger)
        let server = self.server!

        for warning in config.warnings { logger.warning("\(warning)") }
        // The feeds open once the indexes exist: schema changes then never race the instance's own
        // reads (the embedded database has wedged under that race).
        let openFeeds = channel.changeFeeds()
        // As the Node server did: the database line first, then the banner (sent from the service thread).
        let (me, port) = (ServiceBound(self, loop: loop), server.port)
        monitor.start(onReady: { openFeeds() }, onFirstAttempt: { [loop] in loop.post { me.value.banner(port: port) } })
        channel.start()
        installSignalHandlers()
        lifecycle = .serving(port: server.port)
        server.run()

        // One grace period in all: what draining left of it (at least a second for the last writes).
        var left = TimeInterval(config.shutdownGraceSeconds)
        if case .draining(let deadline) = lifecycle { left = max(1, deadline.timeIntervalSinceNow) }
        lifecycle = .stopped
        monitor.stop()
        channel.stopChangeFeeds()
        database.shutdown(timeout: left)
        logger.info("stopped")
        return 0
    }

    /// This process's id in `instances` and on its connection records.
    let instanceID = "\(ProcessInfo.processInfo.hostName.prefix(32))-\(getpid())-\(UUID().uuidString.prefix(8).lowercased())"

    /// The browser app, when its files are found (else `/` is a 404 and the log says why).
    private func loadWebApp() -> WebApp? {
        guard let root = WebApp.locate(configured: config.webRoot) else {
            logger.warning("web app not found (no web/index.html here or above the binary; set WEB_ROOT): GET / answers 404")
            return nil
        }
        let signIn: WebApp.SignIn
        if let key = config.clerkPublishableKey, let host = ChannelSettings.frontendAPIHost(publishableKey: key) {
            signIn = .clerk(publishableKey: key, frontendAPI: host)
        } else if config.devSigningKey != nil {
            signIn = .development
        } else {
            signIn = .unconfigured
        }
        do {
            let app = try WebApp(root: root, signIn: signIn, reloads: config.environment == .development)
            logger.debug("web app loaded", metadata: ["root": "\(root.path)", "files": "\(app.assets.count)"])
            return app
        } catch {
            logger.error("web app not loaded: \(error): GET / answers 404")
            return nil
        }
    }

    private func banner(port: Int) {
        guard case .serving = lifecycle else { return }   // a signal came before the database answered
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
        if router.webApp != nil {
            let mode = router.devToken != nil ? " (development sign-in: any name)" : ""
            say("║ Web app: open \(scheme)://localhost:\(port)/\(mode)")
        }
        say("╚\(rule)")
    }

    private func installSignalHandlers() {
        let (me, loop) = (ServiceBound(self, loop: loop), self.loop)
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { loop.post { me.value.beginShutdown(signal: sig) } }
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
        router.draining = true
        channel.drain(until: { [webhook] in webhook?.isIdle ?? true }) { [loop] in loop.stop() }
        // A bound on draining, whatever is still in flight.
        DispatchQueue.global().asyncAfter(deadline: .now() + grace) { [loop] in loop.stop() }
    }
}
