import ChatClient
import ChatDomain
import Foundation

/// The interactive client: conversations, presence, messages, typing and read receipts on a small
/// IRC-like screen. Everything except reading stdin runs on the connection's loop thread, so the
/// state below needs no locks: key presses and lines are posted there.
final class TerminalApp: @unchecked Sendable {   // unchecked: state touched only on the connection's loop thread (input is posted there)
    let connection: ChatConnection
    let screen: Screen
    let palette: Palette
    let keysHint: String?
    private var editor = LineEditor()

    var me = ""
    /// Display names and presence of the users we know of.
    var names: [String: String] = [:]
    var presence: [String: PresenceSnapshot] = [:]
    /// Conversations in list order (the numbers `/open` takes) and their unread counts.
    var conversations: [String: Conversation] = [:]
    var listed: [String] = []
    var unread: [String: Int64] = [:]
    var current: String?
    /// Message ids by seq, per conversation, for /edit and /delete; the oldest seq shown, for /history.
    var messageIDs: [String: [Int64: String]] = [:]
    var oldestShown: [String: Int64] = [:]
    var readSent: [String: Int64] = [:]
    var readBy: [String: [String: Int64]] = [:]
    var typingUntil: [String: [String: Date]] = [:]
    private var lastTypingSent = Date.distantPast
    private var connectionNote: String?
    private var started = false
    /// Lines waiting for the one before them to finish (a /dm before the text sent to it).
    var queue: [String] = []
    var busy = false
    private var inputEnded = false
    private var sending = 0

    init(connection: ChatConnection, terminal: Bool, colour: Bool, keysHint: String?) {
        self.connection = connection
        palette = Palette(enabled: colour)
        screen = Screen(terminal: terminal, palette: palette)
        self.keysHint = keysHint
    }

    /// Starts the connection and reads stdin on the calling thread until the process exits.
    func run() -> Never {
        connection.onEvent = { [self] in handle($0) }
        if screen.terminal {
            RawTerminal.enable()
            watchSignals()
        }
        screen.prompt = "> "
        screen.status = "connecting to \(connection.options.url.absoluteString)…"
        screen.redraw()
        connection.start()
        if screen.terminal {
            var buffer = [UInt8](repeating: 0, count: 1024)
            while true {
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n <= 0 { break }
                let bytes = Array(buffer[0..<n])
                connection.loop.post { [self] in keys(bytes) }
            }
            connection.loop.post { [self] in quit() }
        } else {
            while let line = readLine() { connection.loop.post { [self] in enqueue(line) } }
            connection.loop.post { [self] in endInput() }
        }
        while true { sleep(60) }
    }

    private func watchSignals() {
        for sig in [SIGTERM, SIGHUP, SIGINT, SIGWINCH] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in
                connection.loop.post { [self] in if sig == SIGWINCH { screen.redraw() } else { quit() } }
            }
            source.resume()
            signalSources.append(source)
        }
    }
    private var signalSources: [DispatchSourceSignal] = []

    // MARK: input

    private func keys(_ bytes: [UInt8]) {
        guard !quitting else { return }
        for byte in bytes {
            switch editor.feed(byte) {
            case .none: continue
            case .quit: return quit()
            case .changed:
                screen.input = editor.text
                screen.redrawInput()
                if !editor.text.isEmpty && !editor.text.hasPrefix("/") { typed() }
            case .submit(let line):
                screen.input = ""
                // Commands are echoed; messages show up when the server delivers them.
                if line.hasPrefix("/") { screen.line(palette.dim("> " + line)) } else { screen.redrawInput() }
                enqueue(line)
            }
        }
    }

    private func enqueue(_ line: String) {
        guard !quitting else { return }
        queue.append(line)
        pump()
    }

    /// Runs queued lines while no command is waiting for its reply (and only once connected).
    func pump() {
        while !busy && started && !queue.isEmpty { command(queue.removeFirst()) }
        finishIfDone()
    }

    /// No more input (end of piped input, or /quit): leave once every line is done.
    func endInput() {
        inputEnded = true
        finishIfDone()
    }

    /// Leaves when input ended and nothing is pending, after a moment for the last events.
    private func finishIfDone() {
        guard inputEnded && queue.isEmpty && !busy && sending == 0 && !leaving else { return }
        leaving = true
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.5) { [self] in connection.loop.post { [self] in quit() } }
    }
    private var leaving = false

    /// Tells the others "typing…", at most every 3 s (the server drops more than one per 2 s).
    private func typed() {
        guard let current, Date().timeIntervalSince(lastTypingSent) > 3 else { return }
        lastTypingSent = Date()
        connection.typing(in: current)
    }

    func send(_ text: String) {
        guard let current else { return note("no conversation open: /dm <user>, /group or /open <n> first", error: true) }
        sending += 1
        lastTypingSent = .distantPast
        connection.send(text, to: current) { [self] result in
            sending -= 1
            if case .failure(let error) = result { note("not sent: \(error)", error: true) }
            finishIfDone()
        }
    }

    /// Restores the terminal, closes the socket politely (the others see us go offline at once),
    /// then exits. Runs on the loop thread, so it must not block it.
    func quit() {
        guard !quitting else { return }
        quitting = true
        screen.leave()
        RawTerminal.restore()
        connection.close { exit(0) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 2) { exit(0) }
    }
    private var quitting = false

    // MARK: events

    private func handle(_ event: ChatEvent) {
        switch event {
        case .connected(let user, _, let resumed):
            me = user
            connectionNote = nil
            if resumed {
                note("reconnected")
                refreshConversations(show: false) { }
            } else {
                note("connected to \(connection.options.url.absoluteString) as \(user) — /help lists the commands")
                startUp()
            }
        case .disconnected(let code, let reason, let retryIn):
            connectionNote = "reconnecting…"
            note("connection lost (\(code.map { "\($0): " } ?? "")\(reason)); reconnecting in \(String(format: "%.1f", retryIn)) s", error: true)
        case .failed(let error):
            screen.leave()
            RawTerminal.restore()
            if case .tokenRefused = error, let keysHint {
                Output.fail("\(error) — is \(keysHint)/ the key pair the server trusts?")
            }
            Output.fail(error.description)
        case .message(let m): show(m, live: true)
        case .messageUpdated(let m), .messageDeleted(let m):
            line(m)
        case .read(let c, let user, let seq):
            guard user != me else { return }
            readBy[c, default: [:]][user] = seq
            updateStatus()
        case .typing(let c, let user, let expiresIn):
            guard user != me else { return }
            typingUntil[c, default: [:]][user] = Date().addingTimeInterval(expiresIn)
            updateStatus()
            DispatchQueue.global().asyncAfter(deadline: .now() + expiresIn + 0.1) { [self] in
                connection.loop.post { [self] in updateStatus() }
            }
        case .conversation(let c):
            let isNew = conversations[c.id] == nil
            remember(c)
            if !c.members.contains(me) {
                note("you are no longer in \(label(c.id))")
            } else if isNew {
                note("new conversation: [\(number(of: c.id))] \(label(c.id)) — /open \(number(of: c.id))")
                watch(c.members)
            }
            updateStatus()
        case .presence(let p):
            let before = presence[p.userID]
            presence[p.userID] = p
            if before?.isOnline != p.isOnline { announce(p) }
            updateStatus()
        case .other(let json):
            if json["type"]?.stringValue == "error" {
                note("server: \(json["code"]?.stringValue ?? "error"): \(json["message"]?.stringValue ?? "")", error: true)
            }
        }
    }

    /// First connection: conversations with unread counts, who is around, then presence of all of them.
    private func startUp() {
        busy = true
        refreshConversations(show: true) { [self] in
            directory(onlineOnly: false) { [self] users in
                if let users {
                    for u in users {
                        names[u.userID] = u.displayName
                        presence[u.userID] = PresenceSnapshot(userID: u.userID, isOnline: u.isOnline, lastSeen: u.lastSeen)
                    }
                    showWho(users, atMost: Self.startScreenUsers)
                }
                watch(Array(presence.keys) + conversations.values.flatMap(\.members))
                scheduleDirectoryRefresh()
                started = true
                busy = false
                updateStatus()
                pump()
            }
        }
    }

    /// The start screen lists this many users; /who lists them all.
    static let startScreenUsers = 200

    /// Every page of the user directory (`users.query` following `next`), one request at a time;
    /// nil (after a note) when a page failed.
    func directory(onlineOnly: Bool, quiet: Bool = false, after: String? = nil, collected: [DirectoryUser] = [],
                   then done: @escaping ([DirectoryUser]?) -> Void) {
        connection.users(UsersQuery(onlineOnly: onlineOnly, limit: ClientFrame.maxPageSize, after: after)) { [self] result in
            switch result {
            case .success(let page):
                let all = collected + page.users
                guard let next = page.next, !page.users.isEmpty else { return done(all) }
                directory(onlineOnly: onlineOnly, quiet: quiet, after: next, collected: all, then: done)
            case .failure(let error):
                if !quiet { note("cannot list users: \(error)", error: true) }
                done(nil)
            }
        }
    }

    /// Every page of my conversations (following `next`), then `then`.
    func refreshConversations(show: Bool, before: ConversationCursor? = nil, then: @escaping () -> Void) {
        connection.listConversations(limit: ClientFrame.maxPageSize, before: before) { [self] result in
            switch result {
            case .success(let page):
                for s in page.conversations {
                    remember(s.conversation)
                    unread[s.conversation.id] = s.conversation.id == current ? 0 : s.unread
                }
                if let next = page.next, !page.conversations.isEmpty {
                    return refreshConversations(show: show, before: next, then: then)
                }
                if show { showConversations() }
            case .failure(let error):
                note("cannot list conversations: \(error)", error: true)
            }
            updateStatus()
            then()
        }
    }

    /// Users who signed in for the first time after we started are not watched yet: look for them
    /// among the users online now (every page) and then (presence only reports users one has
    /// subscribed to). Online users only: a newcomer is online when first seen, and the whole
    /// directory could be far larger.
    private func scheduleDirectoryRefresh() {
        DispatchQueue.global().asyncAfter(deadline: .now() + 10) { [self] in
            connection.loop.post { [self] in
                directory(onlineOnly: true, quiet: true) { [self] users in   // tried again in 10 s
                    for u in users ?? [] where names[u.userID] == nil && u.userID != me {
                        names[u.userID] = u.displayName
                        if u.isOnline && presence[u.userID] == nil { note("\(palette.online(u.displayName)) is online (new here)") }
                    }
                    watch((users ?? []).map(\.userID))
                    scheduleDirectoryRefresh()
                }
            }
        }
    }

    /// `* bob is online` / `* bob went offline`.
    private func announce(_ p: PresenceSnapshot) {
        guard p.userID != me else { return }
        note(p.isOnline ? "\(palette.online(name(p.userID))) is online" : "\(name(p.userID)) went offline")
    }

    /// Subscribes to presence of users not watched yet.
    func watch(_ users: [String]) {
        let fresh = Set(users).subtracting([me]).filter { !watched.contains($0) }
        guard !fresh.isEmpty else { return }
        watched.formUnion(fresh)
        subscribe(Array(fresh).sorted())
    }

    /// At most 1000 ids per request (the protocol's limit), one request after the other so that a
    /// directory of any size stays within the rate limit.
    private func subscribe(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        let chunk = Array(ids.prefix(ClientFrame.maxPresenceSubscriptions))
        connection.subscribePresence(chunk) { [self] result in
            switch result {
            case .success(let snapshots):
                for p in snapshots {
                    // Someone who came or went between the directory page and this reply.
                    if let before = presence[p.userID], before.isOnline != p.isOnline { announce(p) }
                    presence[p.userID] = p
                }
            case .failure(let error):
                watched.subtract(chunk)   // watched again at the next chance
                note("cannot watch presence: \(error)", error: true)
            }
            updateStatus()
            subscribe(Array(ids.dropFirst(chunk.count)))
        }
    }
    private var watched: Set<String> = []

    func remember(_ c: Conversation) {
        if conversations[c.id] == nil { listed.append(c.id) }
        conversations[c.id] = c
    }

    // MARK: display

    func show(_ m: ChatMessage, live: Bool) {
        messageIDs[m.conversationID, default: [:]][m.seq] = m.id
        if conversations[m.conversationID] == nil { refreshConversations(show: false) { } }
        // A message from someone ends their "typing…" (the protocol's rule): the status drawn under
        // the message line must already say so.
        if live, typingUntil[m.conversationID]?.removeValue(forKey: m.senderID) != nil { composeStatus() }
        if m.conversationID == current {
            oldestShown[m.conversationID] = min(oldestShown[m.conversationID] ?? m.seq, m.seq)
            line(m)
            if live && m.senderID != me { markRead(m.conversationID, m.seq) }
        } else {
            line(m)
            if live && m.senderID != me { unread[m.conversationID, default: 0] += 1 }
            updateStatus()
        }
    }

    /// `12:03 #5 [group] <bob> text (edited)`: the #seq is what /edit and /delete take.
    func line(_ m: ChatMessage) {
        let time = Self.clock.string(from: m.createdAt)
        let place = m.conversationID == current ? "" : palette.dim("[\(label(m.conversationID))] ")
        let who = m.senderDeleted ? palette.dim("deleted user") : palette.user(name(m.senderID), me: m.senderID == me)
        let body = m.deleted ? palette.dim("(message deleted)") : (m.text ?? "") + (m.editedAt != nil ? palette.dim(" (edited)") : "")
        screen.line("\(palette.dim(time)) \(palette.dim("#\(m.seq)")) \(place)<\(who)> \(body)")
    }

    func markRead(_ conversation: String, _ seq: Int64) {
        guard seq > (readSent[conversation] ?? 0) else { return }
        readSent[conversation] = seq
        connection.markRead(conversation, seq: seq)
    }

    func note(_ text: String, error: Bool = false) {
        guard !quitting else { return }
        screen.line(error ? palette.error("! " + text) : palette.system("* " + text))
    }

    func updateStatus() {
        composeStatus()
        screen.redraw()
    }

    /// The status line and prompt from the current state (drawn with the next output).
    func composeStatus() {
        var parts = [me.isEmpty ? "…" : name(me)]
        if let current {
            parts.append(label(current) + (conversations[current]?.kind == .group ? " (group)" : ""))
            let now = Date()
            let typing = (typingUntil[current] ?? [:]).filter { $0.value > now }.keys.map(name).sorted()
            if !typing.isEmpty { parts.append(typing.joined(separator: ", ") + (typing.count == 1 ? " is typing…" : " are typing…")) }
            let last = conversations[current]?.lastSeq ?? 0
            let readers = (readBy[current] ?? [:]).filter { $0.value >= max(last, messageIDs[current]?.keys.max() ?? 0) }.keys.map(name).sorted()
            if !readers.isEmpty { parts.append("seen by " + readers.joined(separator: ", ")) }
        } else {
            parts.append("no conversation open")
        }
        let waiting = listed.filter { (unread[$0] ?? 0) > 0 && $0 != current }.map { "\(label($0)) \(unread[$0]!)" }
        if !waiting.isEmpty { parts.append("unread: " + waiting.joined(separator: ", ")) }
        let online = presence.values.filter { $0.isOnline && $0.userID != me }.count
        parts.append("\(online) online")
        if let connectionNote { parts.append(connectionNote) }
        screen.status = " " + parts.joined(separator: " │ ")
        screen.prompt = current.map { "[\(label($0))] > " } ?? "> "
    }

    func showConversations() {
        guard !listed.isEmpty else { return note("no conversations yet: /dm <user> or /group <name> <user>...") }
        note("conversations (/open <n>):")
        for (i, id) in listed.enumerated() {
            let n = unread[id] ?? 0
            let kind = conversations[id]?.kind == .group ? "group" : "direct"
            screen.line("  [\(i + 1)] \(label(id)) \(palette.dim("(\(kind))"))\(n > 0 ? palette.bold("  \(n) unread") : "")")
        }
    }

    /// Online users first; past `atMost` lines, a note says how many more there are.
    func showWho(_ users: [DirectoryUser], atMost: Int = .max) {
        let others = users.filter { $0.userID != me }
        guard !others.isEmpty else { return note("nobody else here yet") }
        note("users (\(others.count)):")
        let sorted = others.sorted(by: { ($0.isOnline ? 0 : 1, $0.displayName) < ($1.isOnline ? 0 : 1, $1.displayName) })
        for u in sorted.prefix(atMost) {
            let id = u.displayName == u.userID ? "" : palette.dim(" (\(u.userID))")
            if u.isOnline { screen.line("  \(palette.online("●")) \(u.displayName)\(id) online") }
            else { screen.line("  ○ \(u.displayName)\(id) \(palette.dim("last seen " + Self.lastSeen(u.lastSeen)))") }
        }
        if sorted.count > atMost { note("… and \(sorted.count - atMost) more users not shown: /who lists them all") }
    }

    // MARK: names

    func name(_ user: String) -> String { names[user] ?? user }

    func label(_ conversation: String) -> String {
        guard let c = conversations[conversation] else { return conversation }
        if c.kind == .group { return c.name ?? c.id }
        return c.members.first { $0 != me }.map(name) ?? name(me)
    }

    func number(of conversation: String) -> Int { (listed.firstIndex(of: conversation) ?? listed.count) + 1 }

    static let clock: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm"
        return f
    }()

    static func lastSeen(_ date: Date?) -> String {
        guard let date else { return "never" }
        if Calendar.current.isDateInToday(date) { return clock.string(from: date) }
        let f = DateFormatter()
        f.dateFormat = "MMM d HH:mm"
        return f.string(from: date)
    }
}
