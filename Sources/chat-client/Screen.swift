import Foundation

/// Output for the interactive client. On a terminal the last two rows are a status line and the
/// prompt with what is being typed; a line that arrives is printed above them and both are redrawn,
/// so incoming messages never garble the input. Elsewhere, plain lines.
final class Screen {
    let terminal: Bool
    let palette: Palette
    var status = ""
    var prompt = "> "
    var input = ""
    private var drawn = false

    init(terminal: Bool, palette: Palette) {
        self.terminal = terminal
        self.palette = palette
    }

    func line(_ text: String) {
        guard terminal else { return Output.text(text + "\n") }
        Output.text(erase() + text + "\r\n" + bottom())
    }

    func redraw() {
        guard terminal else { return }
        Output.text(erase() + bottom())
    }

    /// Rewrites only the prompt row (a key press), leaving the status row alone.
    func redrawInput() {
        guard terminal else { return }
        guard drawn else { return redraw() }
        Output.text("\r\u{1B}[2K" + promptLine(width: RawTerminal.width()))
    }

    /// Clears the bottom rows before leaving, so the shell prompt starts on a clean line.
    func leave() {
        guard terminal, drawn else { return }
        Output.text(erase())
        drawn = false
    }

    private func erase() -> String {
        guard drawn else { return "\r" }
        // Prompt row, then the status row above it (when there is one).
        return palette.enabled ? "\r\u{1B}[2K\u{1B}[1A\r\u{1B}[2K" : "\r\u{1B}[2K"
    }

    private func bottom() -> String {
        drawn = true
        let width = RawTerminal.width()
        let promptLine = promptLine(width: width)
        guard palette.enabled else { return promptLine }
        var plain = status
        if plain.count > width - 1 { plain = String(plain.prefix(max(1, width - 2))) + "…" }
        plain += String(repeating: " ", count: max(0, width - 1 - plain.count))
        return palette.status(plain) + "\r\n" + promptLine
    }

    /// The prompt and the end of what is typed, within one row.
    private func promptLine(width: Int) -> String {
        let room = max(8, width - prompt.count - 1)
        return prompt + (input.count > room ? "…" + String(input.suffix(room - 1)) : input)
    }
}
