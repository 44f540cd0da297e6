import Foundation
import Synchronization

/// Puts the terminal in raw input mode (no echo, no line buffering, Ctrl-C as a key) so that incoming
/// lines can be printed above the line being typed, and restores it on every way out.
enum RawTerminal {
    private static let saved = Mutex<termios?>(nil)

    static func enable() {
        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else { return }
        saved.withLock { $0 = original }
        var raw = original
        // Input: no CR→NL translation, no XON/XOFF; local: no echo, no canonical mode, no signals.
        // Output processing stays on, so "\n" still returns the carriage.
        raw.c_iflag &= ~tcflag_t(ICRNL | IXON | BRKINT | INPCK | ISTRIP)
        raw.c_lflag &= ~tcflag_t(ECHO | ICANON | ISIG | IEXTEN)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw)
        atexit { RawTerminal.restore() }
    }

    static func restore() {
        guard var original = saved.withLock({ state -> termios? in defer { state = nil }; return state }) else { return }
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &original)
    }

    /// Columns of the terminal on stdout (80 when unknown).
    static func width() -> Int {
        var size = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
        return Int(size.ws_col)
    }
}
