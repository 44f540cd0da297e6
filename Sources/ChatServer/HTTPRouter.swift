import Foundation
import WebSocketServer

/// The HTTP routes on the server's port. Runs on the service thread; anything slow is a database job.
final class HTTPRouter: HTTPService {
    private let monitor: DatabaseMonitor
    private let metrics: ServerMetrics
    private let webhook: WebhookRoute
    private let webSocketPath: String
    /// The browser app (nil: its files were not found).
    let webApp: WebApp?
    /// `POST /dev/token`, development with the local key pair only (nil: the path is a 404).
    let devToken: DevTokenRoute?
    /// Set at SIGTERM: readiness turns 503 so that load balancers stop sending new clients.
    var draining = false

    init(monitor: DatabaseMonitor, metrics: ServerMetrics, webhook: WebhookRoute, webSocketPath: String,
         webApp: WebApp?, devToken: DevTokenRoute?) {
        self.webApp = webApp
        self.devToken = devToken
        self.monitor = monitor
        self.metrics = metrics
        self.webhook = webhook
        self.webSocketPath = webSocketPath
    }

    func route(_ head: HTTPRequestHead) -> HTTPAction {
        switch head.path {
        case "/healthz":
            return only(.get, head) { .respond(.json(200, ["status": "ok"])) }
        case "/readyz":
            return only(.get, head) {
                if draining { return .respond(.json(503, ["status": "unavailable", "reason": "shutting down"])) }
                switch monitor.state {
                case .ready: return .respond(.json(200, ["status": "ready"]))
                case .connecting: return .respond(.json(503, ["status": "unavailable", "reason": "connecting to MongoDB"]))
                case .unavailable(let reason): return .respond(.json(503, ["status": "unavailable", "reason": reason]))
                }
            }
        case "/metrics":
            return only(.get, head) {
                .respond(HTTPResponse(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metrics.exposition()))
            }
        case WebhookRoute.path:
            return only(.post, head) { webhook.action(head) }
        case webSocketPath:
            return only(.get, head) { .respond(.json(426, ["error": "this endpoint speaks WebSocket: send an Upgrade request"])) }
        case DevTokenRoute.path where devToken != nil:
            return only(.post, head) { devToken!.action(head) }
        default:
            if let action = webApp?.action(head) { return action }
            return .respond(.json(404, ["error": "not found", "path": head.path]))
        }
    }

    private func only(_ method: HTTPMethod, _ head: HTTPRequestHead, _ action: () -> HTTPAction) -> HTTPAction {
        guard head.method == method else {
            var response = HTTPResponse.json(405, ["error": "method not allowed", "allow": method.rawValue])
            response.headers.append(("allow", method.rawValue))
            return .respond(response)
        }
        return action()
    }
}

extension HTTPResponse {
    static func json(_ status: Int, _ fields: [String: String]) -> HTTPResponse {
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])) ?? Data("{}".utf8)
        return HTTPResponse(status: status, body: Array(data))
    }
}
