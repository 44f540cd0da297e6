/// Rules of the user directory (`users.query`).
public enum UserDirectory {
    /// Whether a search can be a whole email address, the only way an email is matched (a substring
    /// would let anyone probe addresses a few characters at a time): it has an `@` and no whitespace
    /// or control characters.
    public static func couldBeEmail(_ search: String) -> Bool {
        search.contains("@") && !search.unicodeScalars.contains {
            $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F
        }
    }
}
