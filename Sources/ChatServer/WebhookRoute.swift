import ChatDomain
import ClerkAuth
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// `POST /api/webhooks/clerk`: verify the Svix signature over the raw body, decode the event, apply
/// it on a worker (transaction with its svix-id record), answer in the terms Svix retries on. Sockets
/// of a deleted user or an ended session close on every instance, this one included, through the
/// change streams the broker follows.
final class WebhookRoute {
    static let path = "/api/webhooks/clerk"
    private static let keptHeaders = ["svix-id", "svix-timestamp", "svix-signature",
                                      "webhook-id", "webhook-timestamp", "webhook-signature"]

    private let verifier: WebhookVerifier?
    private let maxBodyBytes: Int
    private let database: Database
    private let monitor: DatabaseMonitor
    private let metrics: ServerMetrics
    private let logger: Logger
    private let loop: ServiceLoop

    init(verifier: WebhookVerifier?, maxBodyBytes: Int, database: Database, monitor: DatabaseMonitor, metrics: ServerMetrics,
         logger: Logger, loop: ServiceLoop) {
        self.verifier = verifier
        self.maxBodyBytes = maxBodyBytes
        self.database = database
        self.monitor = monitor
        self.metrics = metrics
        self.logger = logger
        self.loop = loop
    }

    /// Deliveries being applied (service thread): shutdown waits for them to be answered.
    private(set) var jobsInFlight = 0
    var isIdle: Bool { jobsInFlight == 0 }

    func action(_ head: HTTPRequestHead) -> HTTPAction {
        guard let verifier else {
            return .respond(.json(503, ["error": "webhooks are not configured: set CLERK_WEBHOOK_SECRET"]))
        }
        // Missing headers or a stale timestamp are refused before a byte of the body is read.
        do { try verifier.checkHeaders(WebhookHeaders.from { head.header($0) }) } catch {
            logRejection(error.reason, type: "unknown")
            var refused = HTTPResponse.json(400, ["error": "invalid webhook"])
            refused.closeConnection = true
            return .respond(refused)
        }
        return .readBody(limit: maxBodyBytes, keepHeaders: Self.keptHeaders) { [self] request, responder in
            handle(request, responder)
        }
    }

    private func handle(_ request: HTTPRequest, _ responder: HTTPResponder) {
        guard let verifier else { return }
        let headers = WebhookHeaders.from { request.header($0) }
        let deliveryID: String
        do {
            deliveryID = try verifier.verify(headers: headers, body: request.body)
        } catch {
            reject(responder, reason: error.reason, type: "unknown")
            return
        }
        let event: ClerkEvent
        do { event = try ClerkEvent.decode(request.body) } catch {
            logger.warning("webhook body is not a Clerk event", metadata: ["svix_id": "\(deliveryID)", "error": "\(error)"])
            reject(responder, reason: "not_a_clerk_event", type: "unknown")
            return
        }
        switch event {
        case .ignored(let type):
            logger.info("webhook ignored", metadata: ["svix_id": "\(deliveryID)", "type": "\(type)"])
            finish(responder, type: type, outcome: .ignored)
        case .sessionEnded(let type, let sessionID, let userID):
            // Recorded so that every instance closes the session's sockets (change stream) and its
            // tokens cannot connect again; 2xx only once that is stored.
            jobsInFlight += 1
            database.submit("session_revoke", on: loop, { c in
                try PresenceStore.revokeSession(sessionID, userID: userID, now: Date(), on: c)
            }) { [self] result in
                jobsInFlight -= 1
                switch result {
                case .success:
                    logger.info("session ended", metadata: ["svix_id": "\(deliveryID)", "type": "\(type)"])
                    finish(responder, type: type, outcome: .applied)
                case .failure(let error):
                    logger.error("session end not recorded", metadata: ["svix_id": "\(deliveryID)", "error": "\(error)"])
                    metrics.webhookDelivery(type: type, outcome: "unavailable")
                    responder.respond(.json(503, ["error": "database unavailable, retry later"]))
                }
            }
        case .userUpserted, .userDeleted:
            // Known down: answer at once so that Svix retries, instead of waiting out server selection.
            if case .unavailable = monitor.state {
                metrics.webhookDelivery(type: event.type, outcome: "unavailable")
                responder.respond(.json(503, ["error": "database unavailable, retry later"]))
                return
            }
            let now = Date()
            jobsInFlight += 1
            database.submit("webhook_apply", on: loop, { connection in
                try UserStore.apply(event, deliveryID: deliveryID, now: now, on: connection)
            }) { [self] result in
                jobsInFlight -= 1
                switch result {
                case .success(let outcome):
                    logger.info("webhook \(outcome.rawValue)", metadata: ["svix_id": "\(deliveryID)", "type": "\(event.type)"])
                    finish(responder, type: event.type, outcome: outcome)
                case .failure(let error):
                    let unavailable = (error as? DatabaseError)?.isUnavailable ?? false
                    logger.error("webhook not applied", metadata: ["svix_id": "\(deliveryID)", "error": "\(error)"])
                    metrics.webhookDelivery(type: event.type, outcome: unavailable ? "unavailable" : "failed")
                    // 5xx makes Svix retry; the delivery applies once the database is back.
                    responder.respond(.json(503, ["error": unavailable ? "database unavailable, retry later" : "not applied, retry later"]))
                }
            }
        }
    }

    private func finish(_ responder: HTTPResponder, type: String, outcome: WebhookOutcome) {
        metrics.webhookDelivery(type: type, outcome: outcome.rawValue)
        responder.respond(.json(200, ["status": outcome.rawValue]))
    }

    private func reject(_ responder: HTTPResponder, reason: String, type: String) {
        logRejection(reason, type: type)
        // One generic answer for every failure; the precise reason stays in the log.
        responder.respond(.json(400, ["error": "invalid webhook"]))
    }

    /// Anyone can post a bad webhook: the log line is rate-limited, the metric counts every one.
    private func logRejection(_ reason: String, type: String) {
        LwsServer.clientLog.log(logger, .warning, category: "webhook rejected", "webhook rejected", metadata: ["reason": "\(reason)"])
        metrics.webhookDelivery(type: type, outcome: "rejected_\(reason)")
    }
}
