import ChatClient
import ChatDomain
import Foundation

/// The slash commands of the interactive client. Commands that need a reply set `busy` so that the
/// next line (e.g. a message after `/dm`) waits for them.
extension TerminalApp {
    static let help = """
        /dm <user>                 open (or create) the direct conversation with a user
        /group <name> <user>...    create a group with these members
        /open <n|id|name>          switch to a conversation (numbers as in /list)
        /list                      my conversations with unread counts
        /history                   older messages of the current conversation
        /edit <#seq> <text>        change one of my messages
        /delete <#seq>             delete one of my messages
        /who                       users, online or last seen
        /help                      this text
        /quit                      leave (Ctrl-C and Ctrl-D too)
        anything else              is sent to the current conversation
        """

    func command(_ raw: String) {
        let line = raw.trimmingCharacters(in: .whitespaces)
        guard !line.isEmpty else { return }
        guard line.hasPrefix("/") else { return send(raw) }
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let args = Array(words.dropFirst())
        switch words[0].lowercased() {
        case "/help", "/?": for l in Self.help.split(separator: "\n") { screen.line("  " + l) }
        case "/quit", "/exit", "/q":
            // Leaves once the messages being sent are acknowledged, or soon anyway (disconnected).
            queue.removeAll()
            endInput()
            DispatchQueue.global().asyncAfter(deadline: .now() + 3) { [self] in connection.loop.post { [self] in quit() } }
        case "/list", "/conversations", "/ls": refreshConversations(show: true) { }
        case "/who": who()
        case "/dm", "/msg", "/query":
            guard args.count == 1 else { return note("usage: /dm <user id>", error: true) }
            directMessage(args[0])
        case "/group":
            guard args.count >= 2 else { return note("usage: /group <name> <user>...", error: true) }
            createGroup(args[0], Array(args.dropFirst()))
        case "/open", "/join", "/switch":
            guard args.count == 1 else { return note("usage: /open <n|id|name>", error: true) }
            guard let id = resolve(args[0]) else { return note("no conversation '\(args[0])': /list shows them", error: true) }
            open(id)
        case "/history", "/more": olderHistory()
        case "/edit":
            guard args.count >= 2 else { return note("usage: /edit <#seq> <new text>", error: true) }
            guard let (c, id) = ownMessage(args[0]) else { return }
            let text = line.split(separator: " ", maxSplits: 2).dropFirst(2).joined()
            connection.edit(id, in: c, text: text) { [self] in if case .failure(let e) = $0 { note("not edited: \(e)", error: true) } }
        case "/delete", "/del", "/rm":
            guard args.count == 1 else { return note("usage: /delete <#seq>", error: true) }
            guard let (c, id) = ownMessage(args[0]) else { return }
            connection.delete(id, in: c) { [self] in if case .failure(let e) = $0 { note("not deleted: \(e)", error: true) } }
        default:
            note("unknown command \(words[0]) — /help lists them", error: true)
        }
    }

    /// Every user, page after page.
    private func who() {
        busy = true
        directory(onlineOnly: false) { [self] users in
            if let users {
                for u in users { names[u.userID] = u.displayName }
                showWho(users)
                watch(users.map(\.userID))
            }
            busy = false
            pump()
        }
    }

    private func directMessage(_ user: String) {
        busy = true
        connection.openDirect(with: user) { [self] result in
            switch result {
            case .success(let c):
                remember(c)
                watch(c.members)
                return open(c.id)          // stays busy until the conversation is shown
            case .failure(.server("not_found", _)):
                note("no user '\(user)' (they must have signed in once): /who lists users", error: true)
            case .failure(let error): note("cannot open a conversation with \(user): \(error)", error: true)
            }
            busy = false
            pump()
        }
    }

    private func createGroup(_ name: String, _ members: [String]) {
        busy = true
        connection.createGroup(name: name, members: members) { [self] result in
            switch result {
            case .success(let c):
                remember(c)
                watch(c.members)
                return open(c.id)
            case .failure(let error): note("cannot create the group: \(error)", error: true)
            }
            busy = false
            pump()
        }
    }

    /// A number from /list, a conversation id, or a label (a user's name, a group's name).
    private func resolve(_ key: String) -> String? {
        if let n = Int(key), n >= 1, n <= listed.count { return listed[n - 1] }
        if conversations[key] != nil { return key }
        return listed.first { label($0).lowercased() == key.lowercased() }
    }

    /// Makes a conversation current: shows its latest page and marks it read.
    func open(_ id: String) {
        current = id
        unread[id] = 0
        updateStatus()
        note("── \(label(id)) ──")
        busy = true
        connection.history(HistoryQuery(conversationID: id, limit: 20)) { [self] result in
            switch result {
            case .success(let page):
                if page.hasMore { note("(older messages: /history)") }
                for m in page.messages { show(m, live: false) }
                if page.messages.isEmpty { note("no messages yet") }
                if let last = page.messages.last { markRead(id, last.seq) }
                oldestShown[id] = page.messages.first?.seq ?? 1
            case .failure(let error): note("cannot load messages: \(error)", error: true)
            }
            busy = false
            pump()
        }
    }

    private func olderHistory() {
        guard let current else { return note("no conversation open", error: true) }
        let before = oldestShown[current] ?? Int64.max
        guard before > 1 else { return note("that is the beginning of the conversation") }
        busy = true
        connection.history(HistoryQuery(conversationID: current, before: before == Int64.max ? nil : before, limit: 20)) { [self] result in
            switch result {
            case .success(let page):
                note(page.hasMore ? "── older (/history for more) ──" : "── beginning of the conversation ──")
                for m in page.messages { show(m, live: false) }
                oldestShown[current] = page.messages.first?.seq ?? 1
                if !page.hasMore { oldestShown[current] = 1 }
                note("── end of older messages ──")
            case .failure(let error): note("cannot load older messages: \(error)", error: true)
            }
            busy = false
            pump()
        }
    }

    /// `#12` or `12` in the current conversation (the server checks that it is mine).
    private func ownMessage(_ key: String) -> (String, String)? {
        guard let current else {
            note("no conversation open", error: true)
            return nil
        }
        guard let seq = Int64(key.hasPrefix("#") ? String(key.dropFirst()) : key) else {
            note("'\(key)' is not a message number like #12", error: true)
            return nil
        }
        guard let id = messageIDs[current]?[seq] else {
            note("message #\(seq) is not on screen in this conversation (/history loads older ones)", error: true)
            return nil
        }
        return (current, id)
    }
}
