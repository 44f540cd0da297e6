import ChatDomain

/// Decides which messages are new, so that nothing is shown twice across reconnects and restarts:
/// the last seq delivered per conversation (gap-free sequences make "seq ≤ last" a duplicate) plus
/// the ids seen recently. Live messages that skip a seq, or arrive while a catch-up is running, are
/// held until the catch-up pages (`sync`, `history after`) have been applied, then released in order.
public struct MessageLedger: Sendable {
    public private(set) var positions: [String: Int64]
    private var seen: Set<String> = []
    private var seenOrder: [String] = []
    private let maxSeen = 10_000
    /// Conversations whose catch-up is running: their live messages wait in `held`.
    public private(set) var filling: Set<String> = []
    /// While a `sync` is in flight every live message waits.
    public private(set) var syncing = false
    private var held: [ChatMessage] = []

    public init(positions: [String: Int64] = [:]) { self.positions = positions }

    /// What to do after a step: messages to show now, in order, and catch-ups to run
    /// (`history` after the given seq, per conversation).
    public struct Outcome: Sendable {
        public var deliver: [ChatMessage] = []
        public var fills: [String: Int64] = [:]
        public init() {}
        mutating func merge(_ other: Outcome) {
            deliver += other.deliver
            fills.merge(other.fills) { a, _ in a }
        }
    }

    /// A live message.
    public mutating func receive(_ m: ChatMessage) -> Outcome {
        var out = Outcome()
        if seen.contains(m.id) { return out }
        if syncing || filling.contains(m.conversationID) {
            held.append(m)
            return out
        }
        guard let last = positions[m.conversationID] else {
            out.deliver = accept(m)              // a conversation seen for the first time: start here
            return out
        }
        if m.seq <= last { return out }
        if m.seq == last + 1 {
            out.deliver = accept(m)
            return out
        }
        filling.insert(m.conversationID)
        held.append(m)
        out.fills[m.conversationID] = last
        return out
    }

    /// Sets where a conversation starts when nothing is known yet (its `lastSeq` on first sight).
    public mutating func baseline(_ conversation: String, seq: Int64) {
        if positions[conversation] == nil { positions[conversation] = seq }
    }

    public mutating func beginSync() { syncing = true }

    /// Applies a catch-up page (ascending). With `hasMore` the conversation stays in catch-up and
    /// the outcome asks for the next page; otherwise its held live messages are released.
    public mutating func applyPage(_ conversation: String, _ messages: [ChatMessage], hasMore: Bool) -> Outcome {
        var out = Outcome()
        for m in messages.sorted(by: { $0.seq < $1.seq }) where !seen.contains(m.id) && m.seq > (positions[conversation] ?? 0) {
            out.deliver += accept(m)
        }
        if hasMore, !messages.isEmpty {
            filling.insert(conversation)
            out.fills[conversation] = positions[conversation] ?? 0
            return out
        }
        filling.remove(conversation)
        out.merge(release())
        return out
    }

    /// The sync reply was applied (conversations still paging stay in catch-up).
    public mutating func endSync() -> Outcome {
        syncing = false
        return release()
    }

    /// The connection dropped or a catch-up failed: forget the held live messages (positions did
    /// not move past them, so the next sync brings them again) and start over.
    public mutating func discardHeld() {
        syncing = false
        filling.removeAll()
        held.removeAll()
    }

    /// Whether this message id was delivered (recently).
    public func hasSeen(_ messageID: String) -> Bool { seen.contains(messageID) }

    private mutating func release() -> Outcome {
        var out = Outcome()
        guard !syncing else { return out }
        let waiting = held.sorted { $0.seq < $1.seq }
        held.removeAll()
        for m in waiting { out.merge(receive(m)) }
        return out
    }

    private mutating func accept(_ m: ChatMessage) -> [ChatMessage] {
        positions[m.conversationID] = max(positions[m.conversationID] ?? 0, m.seq)
        seen.insert(m.id)
        seenOrder.append(m.id)
        if seenOrder.count > maxSeen {
            let drop = seenOrder.count - maxSeen
            for id in seenOrder.prefix(drop) { seen.remove(id) }
            seenOrder.removeFirst(drop)
        }
        return [m]
    }
}
