/// The byte bound of one reply page (`history`, `sync`, `conversations.list`), so that a page fits
/// well inside a connection's outbound limit whatever its `limit` and however large its messages:
/// items are taken in order while they fit, and the rest is left for the next page (`hasMore`).
/// The first item is always taken, so paging always makes progress.
public struct PageBudget: Sendable {
    /// The most a page carries by default.
    public static let maxPageBytes = 256 * 1024

    /// The bound for a connection whose outbound queue holds `outboundLimit` bytes: a quarter of it,
    /// at most `maxPageBytes`, so that a page and the events around it never fill the queue.
    public static func pageBytes(outboundLimit: Int) -> Int {
        min(maxPageBytes, max(1, outboundLimit / 4))
    }

    /// The encoded size of one JSON item of a page, with its separating comma.
    public static func size(of item: [String: JSONValue]) -> Int {
        JSONValue.object(item).encoded().count + 1
    }

    public private(set) var remaining: Int
    public private(set) var taken = 0

    public init(bytes: Int) { remaining = bytes }

    /// Takes an item of `bytes` when it fits, or when it is the first one.
    public mutating func take(_ bytes: Int) -> Bool {
        guard taken == 0 || bytes <= remaining else { return false }
        remaining -= bytes
        taken += 1
        return true
    }
}
