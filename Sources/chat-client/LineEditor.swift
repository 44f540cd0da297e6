/// The line being typed, fed raw bytes: UTF-8 text, backspace, Ctrl-U/Ctrl-W, Enter, Ctrl-C/Ctrl-D;
/// escape sequences (arrow keys...) are swallowed.
struct LineEditor {
    enum Action: Equatable { case none, changed, submit(String), quit }

    private(set) var text = ""
    private var pending: [UInt8] = []      // an incomplete UTF-8 sequence
    private var escape: [UInt8]? = nil      // inside an escape sequence

    mutating func feed(_ byte: UInt8) -> Action {
        if var sequence = escape {
            sequence.append(byte)
            // ESC [ ... final byte (0x40-0x7E), or ESC + one character.
            let done = sequence.count == 2 ? byte != UInt8(ascii: "[") && byte != UInt8(ascii: "O") : (0x40...0x7E).contains(byte)
            escape = done ? nil : sequence
            return .none
        }
        switch byte {
        case 0x1B: escape = [byte]; return .none
        case 0x03: return .quit                                            // Ctrl-C
        case 0x04: return text.isEmpty ? .quit : .none                     // Ctrl-D
        case 0x0D, 0x0A:
            let line = text
            text = ""
            return .submit(line)
        case 0x7F, 0x08:
            guard !text.isEmpty else { return .none }
            text.removeLast()
            return .changed
        case 0x15: text = ""; return .changed                              // Ctrl-U
        case 0x17:                                                         // Ctrl-W
            while text.last == " " { text.removeLast() }
            while let last = text.last, last != " " { text.removeLast() }
            return .changed
        case 0x09: text += " "; return .changed
        case 0..<0x20: return .none
        default:
            pending.append(byte)
            guard let scalarLength = Self.length(ofSequenceStartingWith: pending[0]) else { pending.removeAll(); return .none }
            guard pending.count >= scalarLength else { return .none }
            text += String(decoding: pending, as: UTF8.self)
            pending.removeAll()
            return .changed
        }
    }

    mutating func clear() { text = "" }

    private static func length(ofSequenceStartingWith byte: UInt8) -> Int? {
        switch byte {
        case 0..<0x80: return 1
        case 0xC0..<0xE0: return 2
        case 0xE0..<0xF0: return 3
        case 0xF0..<0xF8: return 4
        default: return nil
        }
    }
}
