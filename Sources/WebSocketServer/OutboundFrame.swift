import CLwsShim

/// Bytes ready for `lws_write`, with the `LWS_PRE` headroom lws needs in front of the payload.
/// Encoded once and shared by every recipient of a broadcast: lws writes only into the headroom,
/// and writes happen one at a time on the service thread.
public final class OutboundFrame: @unchecked Sendable {   // unchecked: the payload never changes after init; lws writes the headroom only on the service thread
    let storage: UnsafeMutableRawPointer
    public let count: Int

    public init(_ bytes: some Collection<UInt8>) {
        count = bytes.count
        storage = .allocate(byteCount: chat_lws_pre + max(count, 1), alignment: 16)
        let payload = storage.advanced(by: chat_lws_pre).assumingMemoryBound(to: UInt8.self)
        _ = UnsafeMutableBufferPointer(start: payload, count: count).initialize(from: bytes)
    }

    public convenience init(_ text: String) { self.init(Array(text.utf8)) }

    var payload: UnsafeMutablePointer<UInt8> {
        storage.advanced(by: chat_lws_pre).assumingMemoryBound(to: UInt8.self)
    }

    /// The payload (in-process tests read what a client would receive).
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: payload, count: count)) }

    deinit { storage.deallocate() }
}
