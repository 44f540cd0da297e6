/// Caps on the profile fields stored from Clerk, after Clerk's own limits (usernames up to 64
/// characters, emails up to 320 bytes). A longer value is cut, not refused: the event is already
/// accepted by Clerk, and refusing it would only make Svix retry it for a day.
public enum ProfileLimits {
    public static let usernameBytes = 64
    public static let nameBytes = 256
    public static let emailBytes = 320
    public static let imageURLBytes = 2048

    /// The profile with every field cut to its cap.
    public static func capped(_ p: UserProfile) -> UserProfile {
        UserProfile(clerkID: p.clerkID, username: p.username.map { truncate($0, maxBytes: usernameBytes) },
                    email: p.email.map { truncate($0, maxBytes: emailBytes) },
                    firstName: p.firstName.map { truncate($0, maxBytes: nameBytes) },
                    lastName: p.lastName.map { truncate($0, maxBytes: nameBytes) },
                    imageURL: p.imageURL.map { truncate($0, maxBytes: imageURLBytes) })
    }

    /// The longest prefix of `s` of at most `maxBytes` UTF-8 bytes that ends on a scalar boundary
    /// (a multi-byte character is never split).
    public static func truncate(_ s: String, maxBytes: Int) -> String {
        let utf8 = s.utf8
        guard utf8.count > maxBytes else { return s }
        var end = utf8.index(utf8.startIndex, offsetBy: max(0, maxBytes))
        // Back off over continuation bytes (10xxxxxx) to the first byte of the cut character.
        while end > utf8.startIndex && (utf8[end] & 0xC0) == 0x80 { end = utf8.index(before: end) }
        return String(decoding: utf8[utf8.startIndex..<end], as: UTF8.self)
    }
}
