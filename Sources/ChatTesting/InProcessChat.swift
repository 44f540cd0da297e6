import ChatDomain
import ChatServer
import ClerkAuth
import Foundation
import Logging
import MongoStore
import ServiceLoop
import WebSocketServer

/// The chat channel in-process, as HummingbirdTesting's `.router` mode runs an application without a
/// socket: the server's own request handling (`ChatChannel`: authentication, presence, the stores, the
/// broker) against in-memory connections and the real database. The calling thread is the service
/// thread: `run(until:)` drains the inbox and ticks, as the libwebsockets loop does. Several instances
/// on one database (each with its own `InProcessChat`) act as one through the change streams.
public final class InProcessChat {
    public let loop = ServiceLoop()
    public let database: Database
    public let channel: ChatChannel
    public let keys: DevelopmentKeys
    public let instanceID: String
    private var nextConnection: UInt64 = 0
    private var lastTick = Date.distantPast

    /// A fresh database (or `uri`'s), its indexes, and a channel that trusts `keys`. `feeds`: follow
    /// the change streams (other instances, presence changes, Clerk events).
    public init(uri: String? = nil, keys: DevelopmentKeys? = nil, instanceID: String = "in-process-\(UUID().uuidString.prefix(8))",
                settings: [String: String] = [:], feeds: Bool = true) throws {
        let keys = try keys ?? DevelopmentKeys.generate()
        let uri = try uri ?? TestDatabase.freshURI()
        var environment = ["NODE_ENV": "test", "MONGODB_URI": uri, "CLERK_JWT_KEY": keys.publicKeyPEM]
        environment.merge(settings) { $1 }
        let config = try Config.load(environment: environment, dotEnvPath: nil)
        self.keys = keys
        self.instanceID = instanceID
        database = try Database(uri: config.mongoURI, workers: 4, queueLimit: 10_000, logger: Logger(label: "in-process"))
        try database.withConnection { try Schema.ensureIndexes(on: $0) }
        loop.enter()
        channel = ChatChannel(loop: loop, settings: config.channel, database: database, instanceID: instanceID,
                              logger: Logger(label: "in-process"))
        if feeds { channel.changeFeeds()() }
    }

    deinit {
        channel.stopChangeFeeds()
        database.shutdown(timeout: 5)
    }

    /// A user as Clerk's `user.created` webhook would store them.
    public func createUser(_ id: String) throws {
        let event = ClerkEvent.userUpserted(type: "user.created", profile: UserProfile(clerkID: id, username: id), clerkUpdatedAt: 1)
        _ = try database.withConnection { try UserStore.apply(event, deliveryID: "in-process-\(id)", now: Date(), on: $0) }
    }

    /// A session token for `user`, signed with the key the channel trusts.
    public func token(for user: String, session: String? = nil, lifetime: TimeInterval = 600) throws -> String {
        try DevelopmentKeys.mint(privateKeyPEM: keys.privateKeyPEM, userID: user, sessionID: session ?? "sess_\(user)",
                                 lifetime: lifetime, azp: nil, issuer: nil, kid: nil, now: Date())
    }

    /// A new connection, as if a socket had upgraded on `/ws`.
    public func connect(authorization: String? = nil) -> InProcessClient {
        nextConnection += 1
        let client = InProcessClient(id: nextConnection, chat: self,
                                     request: UpgradeRequest(path: "/ws", authorization: authorization.map { "Bearer \($0)" }))
        channel.opened(client)
        return client
    }

    /// A connection authenticated as `user` (welcome received), or nil when it was not within `timeout`.
    public func connect(as user: String, timeout: TimeInterval = 10) throws -> InProcessClient {
        let client = connect(authorization: try token(for: user))
        guard run(timeout: timeout, until: { client.frames.contains { $0["type"] as? String == "welcome" } }) else {
            throw TestingError("\(user): no welcome within \(timeout) s; got \(client.frames)")
        }
        return client
    }

    /// Serves (inbox, ticks every 50 ms, as the server's loop does) until `condition` holds or `timeout`
    /// passes; true when it held.
    @discardableResult
    public func run(timeout: TimeInterval = 10, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            loop.drain()
            if Date().timeIntervalSince(lastTick) >= 0.05 {
                lastTick = Date()
                channel.tick()
                loop.drain()
            }
            if condition() { return true }
            if Date() >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }

    /// Serves several instances on this thread (their loops are all this thread's).
    @discardableResult
    public static func run(_ instances: [InProcessChat], timeout: TimeInterval = 10, until condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            for chat in instances { chat.run(timeout: 0) { true } }
            if condition() { return true }
            if Date() >= deadline { return false }
            Thread.sleep(forTimeInterval: 0.002)
        }
    }
}

/// One client connection in memory: what it sends goes to the channel as a text frame; what the
/// channel sends it is kept, decoded, in `frames`.
public final class InProcessClient: ClientConnection {
    public let id: UInt64
    public let request: UpgradeRequest
    public private(set) var frames: [[String: Any]] = []
    /// The close code and reason, once the channel closed this connection.
    public private(set) var closed: (code: CloseCode, reason: String)?
    private unowned let chat: InProcessChat
    private var nextRequest = 0

    init(id: UInt64, chat: InProcessChat, request: UpgradeRequest) {
        self.id = id
        self.chat = chat
        self.request = request
    }

    // MARK: ClientConnection (the channel's side)

    @discardableResult
    public func send(_ frame: OutboundFrame) -> Bool {
        chat.loop.preconditionInLoop()
        guard closed == nil else { return false }
        let object = (try? JSONSerialization.jsonObject(with: Data(frame.bytes))) as? [String: Any]
        frames.append(object ?? ["unparsed": String(decoding: frame.bytes, as: UTF8.self)])
        return true
    }

    public func close(_ code: CloseCode, reason: String) {
        chat.loop.preconditionInLoop()
        guard closed == nil else { return }
        closed = (code, reason)
        chat.channel.closed(self)   // as the socket layer reports it once the close is done
    }

    // MARK: the client's side

    /// Sends raw bytes as one message (text, or binary).
    public func write(_ bytes: [UInt8], binary: Bool = false) {
        chat.channel.received(self, message: bytes, binary: binary)
    }

    /// Sends a request and returns its id.
    @discardableResult
    public func request(_ type: String, _ fields: [String: Any] = [:]) -> String {
        nextRequest += 1
        let id = "r\(nextRequest)"
        var object = fields
        object["type"] = type
        object["id"] = id
        write(Array(try! JSONSerialization.data(withJSONObject: object)))
        return id
    }

    /// The reply (`ok` or `error`) to request `id`, serving until it arrives.
    public func reply(to id: String, timeout: TimeInterval = 10) throws -> [String: Any] {
        var found: [String: Any]?
        chat.run(timeout: timeout) {
            found = frames.first { $0["id"] as? String == id && ["ok", "error"].contains($0["type"] as? String ?? "") }
            return found != nil
        }
        guard let found else { throw TestingError("no reply to \(id) within \(timeout) s; got \(frames)") }
        return found
    }

    /// Sends a request and waits for its reply.
    public func call(_ type: String, _ fields: [String: Any] = [:], timeout: TimeInterval = 10) throws -> [String: Any] {
        try reply(to: request(type, fields), timeout: timeout)
    }

    /// Pushed frames of `type` received so far.
    public func events(_ type: String) -> [[String: Any]] {
        frames.filter { $0["type"] as? String == type && $0["id"] == nil }
    }

    /// The client goes away (the socket closed from its side).
    public func disconnect() {
        guard closed == nil else { return }
        closed = (CloseCode.normal, "client left")
        chat.channel.closed(self)
    }
}
