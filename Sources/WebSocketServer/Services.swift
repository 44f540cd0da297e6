import Foundation

/// Routes HTTP requests (service thread only).
public protocol HTTPService: AnyObject {
    func route(_ head: HTTPRequestHead) -> HTTPAction
}

/// Receives the WebSocket events (service thread only).
public protocol WebSocketService: AnyObject {
    /// Decides whether an upgrade may proceed; nil accepts, a string names the refusal for the log.
    func refusal(forUpgrade request: UpgradeRequest) -> String?
    func opened(_ connection: any ClientConnection)
    /// A whole message; lws has checked a text message's UTF-8, not a binary one's.
    func received(_ connection: any ClientConnection, message: [UInt8], binary: Bool)
    func closed(_ connection: any ClientConnection)
    /// Called every `tickMicroseconds` (default 200 ms) for timeouts and housekeeping.
    func tick()
}

/// What the channel holds of one client's socket: a WebSocket here, an in-memory connection in
/// in-process tests (ChatTesting). Service thread only.
public protocol ClientConnection: AnyObject {
    var id: UInt64 { get }
    var request: UpgradeRequest { get }
    /// Queues a frame; false when closing or over the outbound cap (the connection is then closed).
    @discardableResult func send(_ frame: OutboundFrame) -> Bool
    /// Sends what is queued, then closes with `code`.
    func close(_ code: CloseCode, reason: String)
}

/// Counters the adapter reports (open sockets, slow consumers) without depending on a metrics library.
public protocol TransportMetrics: AnyObject {
    func connectionOpened()
    func connectionClosed()
    func slowConsumerClosed()
    func httpRequest(route: String, status: Int)
}
