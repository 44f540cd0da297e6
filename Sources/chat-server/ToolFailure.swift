import ArgumentParser
import ChatServer
import EnvFile
import Foundation

/// A development tool's failure for the person at the terminal: one `chat-server <command>: ...`
/// line on stderr and a non-zero exit (2: a setting is missing or bad, 1: anything else), never a
/// usage text or a raw NSError.
struct ToolFailure: Error, CustomStringConvertible {
    let description: String
    let exitCode: Int32

    static func setting(_ text: String) -> ToolFailure { ToolFailure(description: text, exitCode: 2) }
    static func failed(_ text: String) -> ToolFailure { ToolFailure(description: text, exitCode: 1) }
}

/// Runs a subcommand body, turning whatever it throws into one line and an exit code.
func runTool(_ command: String, _ body: () throws -> Void) throws {
    do { try body() } catch let error as ToolFailure {
        FileHandle.standardError.write(Data("chat-server \(command): \(error.description)\n".utf8))
        throw ExitCode(error.exitCode)
    } catch let error as ExitCode {
        throw error
    } catch {
        FileHandle.standardError.write(Data("chat-server \(command): \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// The settings the tools read: the environment over the `.env` file (empty values are unset, as
/// for the server).
func toolSettings(envFile: String) -> [String: String] {
    DotEnv.settings(environment: ProcessInfo.processInfo.environment,
                    fileText: try? String(contentsOfFile: envFile, encoding: .utf8))
}
