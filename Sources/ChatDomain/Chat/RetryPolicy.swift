/// How a transient database conflict is retried: exponential backoff with full jitter, within a total
/// time budget. A write conflict that outlasts the budget (typically a crashed instance's transaction
/// still holding the documents) is answered `unavailable`, so the client retries later instead of
/// holding a worker for the minute the database may take to reap that transaction.
public struct RetryPolicy: Sendable, Equatable {
    /// Total time for all retries after the first attempt (0: one attempt only).
    public var budget: Double
    /// The first retry waits up to `base`; each later one up to twice the previous, at most `cap`.
    public var base: Double
    public var cap: Double

    public init(budget: Double, base: Double = 0.005, cap: Double = 0.25) {
        self.budget = budget
        self.base = base
        self.cap = cap
    }

    /// Requests wait for at most about 2 s of conflicts.
    public static let standard = RetryPolicy(budget: 2)

    /// The longest wait before retry number `retry` (1 = the first retry).
    public func ceiling(retry: Int) -> Double {
        min(cap, base * Double(1 << min(max(retry - 1, 0), 30)))
    }

    /// The wait before retry number `retry`, given a uniform `random` in [0, 1), or nil when the
    /// budget (`elapsed` seconds spent so far) does not allow another try.
    public func delay(retry: Int, elapsed: Double, random: Double) -> Double? {
        guard budget > 0 else { return nil }
        let wait = ceiling(retry: retry) * min(max(random, 0), 1)
        return elapsed + wait <= budget ? wait : nil
    }
}
