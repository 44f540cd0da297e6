import ChatDomain
import Foundation
import WebSocketClient

/// A chat.v1 client over `WebSocketClientLoop`: authenticates with the first-message `auth`,
/// correlates requests and replies by `id`, reports pushed events through `onEvent`, and reconnects
/// by itself (backoff with jitter), then catches up with `sync` so that no message is shown twice.
///
/// Threading: all state lives on the loop's service thread. The public methods may be called from
/// any thread; `onEvent`, `onPositions` and completions run on the loop thread.
public final class ChatConnection: WebSocketClientDelegate, @unchecked Sendable {   // unchecked: state on the loop thread; public methods post there
    public typealias Completion = (Result<[String: JSONValue], ChatClientError>) -> Void

    public struct Options: Sendable {
        public var url: URL
        public var insecureTLS = false
        public var backoff = Backoff()
        /// Last seq per conversation from an earlier run (`--state`): catch up from there. nil: start at
        /// the present (the conversations' current `lastSeq`).
        public var positions: [String: Int64]?
        /// A connection that stayed up this long resets the backoff.
        public var stableAfter: TimeInterval = 30

        public init(url: URL, insecureTLS: Bool = false, positions: [String: Int64]? = nil) {
            self.url = url
            self.insecureTLS = insecureTLS
            self.positions = positions
        }
    }

    private enum Phase { case idle, connecting, authenticating, ready, waiting, finished }

    private struct Pending {
        let type: String
        let fields: [String: JSONValue]
        let completion: Completion
        /// Catch-up and re-subscription requests belong to one connection; they are not resent.
        let isInternal: Bool
        var sentOn: UInt64?
    }

    public let loop: WebSocketClientLoop
    public let options: Options
    private let tokens: TokenSource
    public var onEvent: ((ChatEvent) -> Void)?
    /// Called with the positions to persist (`--state`), just before each message is delivered.
    public var onPositions: (([String: Int64]) -> Void)?

    private var phase = Phase.idle
    private var socket: ClientSocket?
    private var backoff: Backoff
    private var pending: [String: Pending] = [:]
    private var order: [String] = []
    private var nextID = 0
    private var ledger: MessageLedger
    /// What `onPositions` was last given: only messages already handed to `onEvent`, and baselines.
    private var persisted: [String: Int64]
    private var watched: Set<String> = []
    private var presence: [String: PresenceSnapshot] = [:]
    private var everConnected = false
    private var authID = ""
    private var authError: (code: String, message: String)?
    private var connectedAt: Date?
    private var generation = 0
    private var finalError: ChatClientError?
    private var onClosed: [() -> Void] = []
    public private(set) var userID: String?

    /// `loop`: a started loop to share (chat-bench runs many connections on one); nil starts one of its own.
    public init(options: Options, tokens: TokenSource, loop: WebSocketClientLoop? = nil) throws {
        self.options = options
        self.tokens = tokens
        if let loop { self.loop = loop } else {
            LwsLogging.quiet()
            self.loop = try WebSocketClientLoop()
            self.loop.start()
        }
        backoff = options.backoff
        ledger = MessageLedger(positions: options.positions ?? [:])
        persisted = options.positions ?? [:]
    }

    // MARK: public API (any thread)

    public func start() { loop.post { [self] in if phase == .idle { connectNow() } } }

    /// Sends a typed request; the completion gets the `ok` frame's `data` or the error.
    public func request(_ request: ClientRequest, completion: @escaping Completion) {
        self.request(type: request.type, fields: request.fields, completion: completion)
    }

    /// Sends any request (`fields` without `type` and `id`: the connection assigns the id). Requests
    /// made while disconnected wait; those without a reply when the connection dropped are sent again
    /// after reconnecting (chat.v1 requests are safe to resend; `message.send` is idempotent by clientId).
    public func request(type: String, fields: [String: JSONValue], completion: @escaping Completion) {
        loop.post { [self] in enqueue(type: type, fields: fields, isInternal: false, completion: completion) }
    }

    /// Closes the connection for good; `done` runs (on the loop thread) once the socket is closed.
    public func close(done: (() -> Void)? = nil) {
        loop.post { [self] in
            let wasOpen = socket != nil
            finish(.cancelled, report: false)
            if let done { if wasOpen { onClosed.append(done) } else { done() } }
        }
    }

    /// Last delivered seq per conversation (loop thread).
    public var positions: [String: Int64] { ledger.positions }

    // MARK: connecting

    private func connectNow() {
        guard phase != .finished else { return }
        generation += 1
        phase = .connecting
        authError = nil
        loop.connect(options.url, insecureTLS: options.insecureTLS, delegate: self)
    }

    public func connected(_ socket: ClientSocket) {
        guard phase == .connecting else { socket.close(); return }
        self.socket = socket
        let token: String
        do { token = try tokens.token() } catch {
            finish(.noToken("cannot make a development token: \(error)"), report: true)
            return
        }
        phase = .authenticating
        nextID += 1
        authID = "auth-\(nextID)"
        socket.send(JSONValue.object(ClientRequest.auth(token: token).frame(id: authID)).encoded())
    }

    public func received(_ socket: ClientSocket, message: [UInt8]) {
        guard socket === self.socket, let frame = JSONValue.parse(message), let type = frame["type"]?.stringValue else { return }
        switch type {
        case "welcome": welcomed(frame)
        case "ok", "error": reply(frame, type: type)
        case "message":
            guard let m = ChatMessage(json: frame["message"]) else { return emit(.other(frame)) }
            apply(ledger.receive(m))
        case "message.updated", "message.deleted":
            guard let m = ChatMessage(json: frame["message"]) else { return emit(.other(frame)) }
            emit(type == "message.updated" ? .messageUpdated(m) : .messageDeleted(m))
        case "read":
            guard let c = frame["conversationId"]?.stringValue, let u = frame["userId"]?.stringValue, let seq = frame["seq"]?.intValue
            else { return emit(.other(frame)) }
            emit(.read(conversationID: c, userID: u, seq: seq))
        case "typing":
            guard let c = frame["conversationId"]?.stringValue, let u = frame["userId"]?.stringValue else { return emit(.other(frame)) }
            emit(.typing(conversationID: c, userID: u, expiresIn: Double(frame["expiresInMs"]?.intValue ?? 5000) / 1000))
        case "conversation":
            guard let c = Conversation(json: frame["conversation"]) else { return emit(.other(frame)) }
            // Joined now: what came before is history, not news.
            ledger.baseline(c.id, seq: c.lastSeq)
            persistBaselines()
            emit(.conversation(c))
        case "presence":
            guard let p = PresenceSnapshot(json: frame) else { return emit(.other(frame)) }
            presence[p.userID] = p
            emit(.presence(p))
        default:
            emit(.other(frame))
        }
    }

    public func closed(_ socket: ClientSocket, code: UInt16?, reason: String) {
        if let current = self.socket, current !== socket { return }
        self.socket = nil
        let callbacks = onClosed
        onClosed.removeAll()
        callbacks.forEach { $0() }
        guard phase != .finished else { return }
        ledger.discardHeld()
        for (id, p) in pending where p.isInternal { pending[id] = nil; p.completion(.failure(.cancelled)) }
        order.removeAll { pending[$0] == nil }
        if let up = connectedAt, Date().timeIntervalSince(up) >= options.stableAfter { backoff.reset() }
        connectedAt = nil

        let delay: TimeInterval
        switch code {
        case ChannelCloseCode.tokenInvalid.rawValue?:
            return finish(.tokenRefused(code: authError?.code ?? ErrorCode.tokenInvalid.rawValue, reason: reason), report: true)
        case ChannelCloseCode.tokenExpired.rawValue?:
            guard tokens.canRenew else { return finish(.tokenExpired(reason: reason), report: true) }
            delay = backoff.soon()
        case ChannelCloseCode.sessionEnded.rawValue?: return finish(.sessionEnded, report: true)
        case ChannelCloseCode.userDeleted.rawValue?: return finish(.userDeleted, report: true)
        case ChannelCloseCode.originNotAllowed.rawValue?: return finish(.closed(code: code, reason: reason), report: true)
        case ChannelCloseCode.serviceRestart.rawValue?: delay = backoff.soon()
        // lws 4.1's client parser turns 1012-1015 into 1002 before we see them; the reason text
        // survives ("server restarting: reconnect", "database unavailable").
        case 1002? where reason.contains("restart"): delay = backoff.soon()
        case nil where !everConnected:
            return finish(.unreachable(url: options.url.absoluteString, reason: Self.explain(reason)), report: true)
        default: delay = backoff.next()
        }
        phase = .waiting
        emit(.disconnected(code: code, reason: code == nil ? Self.explain(reason) : reason, retryIn: delay))
        let expected = generation
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { [weak self] in
            guard let self else { return }
            self.loop.post { if self.generation == expected && self.phase == .waiting { self.connectNow() } }
        }
    }

    /// lws' connection errors in words a person understands.
    static func explain(_ reason: String) -> String {
        let r = reason.lowercased()
        if r.contains("unable to connect") || r.contains("refused") || r.contains("conn fail") {
            return "connection refused: is chat-server running there?"
        }
        if r.hasPrefix("cannot connect to") { return "unknown host or unusable address" }
        if r.contains("not 101") || r.contains("bad http response") || r.contains("403") {
            return "the server refused the WebSocket upgrade: wrong path, an Origin it does not allow, or shutting down"
        }
        if r.contains("ssl") || r.contains("tls") || r.contains("cert") {
            return "TLS handshake failed (\(reason)); for a self-signed certificate add --insecure"
        }
        if r.contains("timed out") || r.contains("timeout") { return "timed out" }
        return reason
    }

    // MARK: welcome and catch-up

    private func welcomed(_ frame: JSONValue) {
        let resumed = everConnected
        phase = .ready
        everConnected = true
        connectedAt = Date()
        userID = frame["userId"]?.stringValue
        emit(.connected(userID: userID ?? "", connectionID: frame["connectionId"]?.stringValue ?? "", resumed: resumed))
        catchUp(first: !resumed)
        if resumed && !watched.isEmpty { resubscribe() }
        // Requests that waited, and those whose reply the last connection did not bring, in order.
        for id in order { if var p = pending[id], p.sentOn != UInt64(generation) { p.sentOn = UInt64(generation); pending[id] = p; transmit(id, p) } }
    }

    private func catchUp(first: Bool) {
        ledger.beginSync()
        if first && options.positions == nil {
            // No earlier state: start at the present rather than replaying every conversation.
            baselineConversations(before: nil)
        } else {
            sync()
        }
    }

    /// Records every conversation's current position, a page at a time, then syncs.
    private func baselineConversations(before: String?) {
        var fields: [String: JSONValue] = ["limit": 200]
        if let before { fields["before"] = .string(before) }
        enqueue(type: "conversations.list", fields: fields, isInternal: true) { [self] result in
            if case .success(let data) = result {
                for c in data["conversations"]?.arrayValue ?? [] {
                    if let id = c["conversationId"]?.stringValue, let seq = c["lastSeq"]?.intValue { ledger.baseline(id, seq: seq) }
                }
                if let next = data["next"]?.stringValue { return baselineConversations(before: next) }
            }
            sync()
        }
    }

    private func sync() {
        let expected = generation
        enqueue(type: "sync", fields: ClientRequest.sync(positions: ledger.positions, limit: 200).fields, isInternal: true) { [self] result in
            guard expected == generation else { return }
            switch result {
            case .success(let data):
                var outcome = MessageLedger.Outcome()
                for entry in data["conversations"]?.arrayValue ?? [] {
                    guard let c = Conversation(json: entry["conversation"]) else { continue }
                    let messages = entry["messages"]?.arrayValue?.compactMap { ChatMessage(json: $0) } ?? []
                    outcome.merge(ledger.applyPage(c.id, messages, hasMore: entry["hasMore"]?.boolValue ?? false))
                }
                if data["hasMore"]?.boolValue == true {
                    // The reply was cut at the server's page bound: sync on from the positions it brought.
                    apply(outcome)
                    return sync()
                }
                outcome.merge(ledger.endSync())
                apply(outcome)
                persistBaselines()
            case .failure(.cancelled):
                break
            case .failure:
                retryCatchUp()
            }
        }
    }

    /// Pages one conversation's history after `seq` (a gap, or more than a sync page).
    private func fill(_ conversation: String, after seq: Int64) {
        let expected = generation
        let query = HistoryQuery(conversationID: conversation, after: seq, limit: 200)
        enqueue(type: "history", fields: ClientRequest.history(query).fields, isInternal: true) { [self] result in
            guard expected == generation else { return }
            switch result {
            case .success(let data):
                let messages = data["messages"]?.arrayValue?.compactMap { ChatMessage(json: $0) } ?? []
                apply(ledger.applyPage(conversation, messages, hasMore: data["hasMore"]?.boolValue ?? false))
            case .failure(.cancelled): break
            case .failure: retryCatchUp()
            }
        }
    }

    private func retryCatchUp() {
        ledger.discardHeld()
        let expected = generation
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) { [weak self] in
            guard let self else { return }
            self.loop.post { if self.generation == expected && self.phase == .ready { self.catchUp(first: false) } }
        }
    }

    /// Each message's position is persisted before it is shown: a client killed in between misses
    /// that one message on restart rather than showing it twice.
    private func apply(_ outcome: MessageLedger.Outcome) {
        for m in outcome.deliver {
            if onPositions != nil {
                persisted[m.conversationID] = max(persisted[m.conversationID] ?? 0, m.seq)
                onPositions?(persisted)
            }
            emit(.message(m))
        }
        for (conversation, after) in outcome.fills { fill(conversation, after: after) }
    }

    /// Starting points (conversations' lastSeq on first sight) are persisted too, so that a restart
    /// catches up from them instead of starting at the present again.
    private func persistBaselines() {
        guard onPositions != nil else { return }
        var changed = false
        for (c, seq) in ledger.positions where persisted[c] == nil {
            persisted[c] = seq
            changed = true
        }
        if changed { onPositions?(persisted) }
    }

    /// After a reconnect the subscribe reply is the truth: report what changed meanwhile.
    /// In requests of at most 1000 ids, the protocol's limit.
    private func resubscribe() {
        let ids = watched.sorted()
        for start in stride(from: 0, to: ids.count, by: ClientFrame.maxPresenceSubscriptions) {
            let chunk = ids[start..<min(ids.count, start + ClientFrame.maxPresenceSubscriptions)]
            enqueue(type: "presence.subscribe", fields: ["userIds": .array(chunk.map(JSONValue.string))], isInternal: true) { _ in }
        }
    }

    // MARK: requests

    private func enqueue(type: String, fields: [String: JSONValue], isInternal: Bool, completion: @escaping Completion) {
        if let finalError { return completion(.failure(finalError)) }
        nextID += 1
        let id = "c\(nextID)"
        var p = Pending(type: type, fields: fields, completion: completion, isInternal: isInternal, sentOn: nil)
        if type == "presence.subscribe" || type == "presence.unsubscribe" {
            let users = fields["userIds"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if type == "presence.subscribe" { watched.formUnion(users) } else { watched.subtract(users) }
        }
        if phase == .ready { p.sentOn = UInt64(generation) }
        pending[id] = p
        order.append(id)
        if phase == .ready { transmit(id, p) }
    }

    private func transmit(_ id: String, _ p: Pending) {
        var frame = p.fields
        frame["type"] = .string(p.type)
        frame["id"] = .string(id)
        socket?.send(JSONValue.object(frame).encoded())
    }

    private func reply(_ frame: JSONValue, type: String) {
        let id = frame["id"]?.stringValue
        if type == "error", id == authID {
            authError = (frame["code"]?.stringValue ?? "error", frame["message"]?.stringValue ?? "")
            return
        }
        guard let id, let p = pending.removeValue(forKey: id) else {
            if type == "error" { emit(.other(frame)) }
            return
        }
        if order.first == id { order.removeFirst() } else { order.removeAll { $0 == id } }
        if type == "ok" {
            let data = frame["data"]?.objectValue ?? [:]
            if p.type == "presence.subscribe" { notePresence(data) }
            p.completion(.success(data))
        } else {
            p.completion(.failure(.server(code: frame["code"]?.stringValue ?? "error", message: frame["message"]?.stringValue ?? "")))
        }
    }

    private func notePresence(_ data: [String: JSONValue]) {
        for entry in data["users"]?.arrayValue ?? [] {
            guard let p = PresenceSnapshot(json: entry) else { continue }
            let before = presence[p.userID]
            presence[p.userID] = p
            if let before, before != p { emit(.presence(p)) }
        }
    }

    private func finish(_ error: ChatClientError, report: Bool) {
        guard phase != .finished else { return }
        phase = .finished
        finalError = error
        generation += 1
        socket?.close()
        let waiting = order.compactMap { pending[$0] }
        pending.removeAll()
        order.removeAll()
        for p in waiting { p.completion(.failure(error)) }
        if report { emit(.failed(error)) }
    }

    private func emit(_ event: ChatEvent) { onEvent?(event) }
}
