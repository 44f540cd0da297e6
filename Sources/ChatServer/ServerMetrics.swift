import Foundation
import Metrics
import Prometheus
import Synchronization
import WebSocketServer

/// The server's metrics, through swift-metrics with the Prometheus exporter behind it.
public final class ServerMetrics: TransportMetrics, Sendable {
    public let registry: PrometheusCollectorRegistry
    private let openConnections = Gauge(label: "chat_ws_connections")
    private let slowConsumers = Counter(label: "chat_ws_slow_consumer_closed_total")
    private let connections = Atomic<Int>(0)
    private let liveSessions = Gauge(label: "chat_ws_sessions_live")
    /// Sessions are released wherever their last reference goes (a worker's completion may hold one).
    private let liveSessionCount = Atomic<Int>(0)

    /// Bootstraps swift-metrics once per process.
    public static let shared: ServerMetrics = {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return ServerMetrics(registry: registry)
    }()

    private init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    public func connectionOpened() { openConnections.record(connections.add(1, ordering: .relaxed).newValue) }
    public func connectionClosed() { openConnections.record(connections.subtract(1, ordering: .relaxed).newValue) }
    func sessionCreated() { liveSessions.record(liveSessionCount.add(1, ordering: .relaxed).newValue) }
    func sessionReleased() { liveSessions.record(liveSessionCount.subtract(1, ordering: .relaxed).newValue) }
    public func slowConsumerClosed() { slowConsumers.increment() }

    public func httpRequest(route: String, status: Int) {
        Counter(label: "chat_http_requests_total", dimensions: [("route", route), ("status", String(status))]).increment()
    }

    public func webhookDelivery(type: String, outcome: String) {
        Counter(label: "chat_webhook_deliveries_total", dimensions: [("type", type), ("outcome", outcome)]).increment()
    }

    /// The Prometheus text exposition.
    public func exposition() -> [UInt8] {
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}
