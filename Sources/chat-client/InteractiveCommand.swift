import ArgumentParser
import Foundation

/// The default subcommand: the IRC-like client (plain line mode when stdin is not a terminal).
struct InteractiveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat", abstract: "The interactive client (the default). Type /help once connected.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption
    @Flag(help: "No colours, no status line.")
    var noColor = false

    func run() throws {
        try guarded {
            let chat = try connection.makeConnection(developmentUser: identity.user)
            let terminal = isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1
            let colour = terminal && !noColor && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
            let app = TerminalApp(connection: chat, terminal: terminal, colour: colour,
                                  keysHint: identity.user == nil ? nil : connection.keysDir)
            app.run()
        }
    }
}
