/// The three Svix / Standard Webhooks headers of one delivery.
public struct WebhookHeaders: Sendable, Equatable {
    public var id: String?
    public var timestamp: String?
    public var signature: String?

    public init(id: String?, timestamp: String?, signature: String?) {
        self.id = id
        self.timestamp = timestamp
        self.signature = signature
    }

    /// `lookup` receives lowercase header names. The svix-* set wins; the unbranded webhook-* set is
    /// used only when no svix-* header is present, so the two sets are never mixed.
    public static func from(_ lookup: (String) -> String?) -> WebhookHeaders {
        let svix = WebhookHeaders(id: lookup("svix-id"), timestamp: lookup("svix-timestamp"),
                                  signature: lookup("svix-signature"))
        if svix.id != nil || svix.timestamp != nil || svix.signature != nil { return svix }
        return WebhookHeaders(id: lookup("webhook-id"), timestamp: lookup("webhook-timestamp"),
                              signature: lookup("webhook-signature"))
    }
}
