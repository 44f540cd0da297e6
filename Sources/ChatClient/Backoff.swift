import Foundation

/// Exponential backoff with full jitter (a random delay up to base·2ⁿ, capped), as the protocol
/// README recommends: clients that lost the same server do not all come back at the same instant.
public struct Backoff: Sendable {
    public var base: TimeInterval
    public var cap: TimeInterval
    public private(set) var attempt = 0

    public init(base: TimeInterval = 0.5, cap: TimeInterval = 30) {
        self.base = base
        self.cap = cap
    }

    public mutating func next() -> TimeInterval {
        let ceiling = min(cap, base * pow(2, Double(min(attempt, 30))))
        attempt += 1
        return Double.random(in: 0...ceiling)
    }

    /// "Soon, with a little jitter": a restart (1012) or an expired token (4004).
    public mutating func soon() -> TimeInterval {
        attempt = max(attempt, 1)
        return Double.random(in: 0.05...min(0.5, max(cap, 0.05)))
    }

    public mutating func reset() { attempt = 0 }
}
