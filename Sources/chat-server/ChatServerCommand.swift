import ArgumentParser
import ChatServer
import Foundation
import Logging

struct ChatServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat-server",
        abstract: "Realtime chat backend: Clerk webhooks, WebSocket chat and presence on MongoDB.",
        subcommands: [Serve.self, SendWebhook.self, MintToken.self, DevKeys.self, BackfillUsers.self],
        defaultSubcommand: Serve.self)
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the server (configuration from the environment and .env).")

    @Option(help: "The .env file to read (the environment wins over it).")
    var envFile: String = ".env"

    func run() throws {
        let config: Config
        do {
            config = try Config.load(environment: ProcessInfo.processInfo.environment, dotEnvPath: envFile)
        } catch {
            FileHandle.standardError.write(Data("configuration error: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let production = config.environment == .production
        let level = config.logLevel
        LoggingSystem.bootstrap { label in
            var handler: LogHandler = production ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "chat-server")
        // The seed's plain lines in development; the same words as JSON log lines in production.
        do {
            let app = try ChatServerApp(config: config, logger: logger) { line in production ? logger.info("\(line)") : Console.print(line) }
            let code = try app.run()
            throw ExitCode(code)
        } catch let error as ExitCode {
            throw error
        } catch {
            FileHandle.standardError.write(Data("startup error: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
