/// ANSI styles, or nothing when colour is off.
struct Palette {
    let enabled: Bool

    func paint(_ text: String, _ codes: String) -> String { enabled ? "\u{1B}[\(codes)m\(text)\u{1B}[0m" : text }
    func dim(_ text: String) -> String { paint(text, "2") }
    func bold(_ text: String) -> String { paint(text, "1") }
    func system(_ text: String) -> String { paint(text, "36") }
    func error(_ text: String) -> String { paint(text, "31") }
    func online(_ text: String) -> String { paint(text, "32") }
    func status(_ text: String) -> String { paint(text, "7") }

    /// A stable colour per user, so that people are told apart at a glance.
    func user(_ name: String, me: Bool) -> String {
        if me { return paint(name, "1") }
        let colours = ["33", "35", "34", "32", "36", "91", "93", "95"]
        var hash: UInt32 = 5381
        for byte in name.utf8 { hash = (hash &* 33) ^ UInt32(byte) }
        return paint(name, colours[Int(hash % UInt32(colours.count))])
    }
}
