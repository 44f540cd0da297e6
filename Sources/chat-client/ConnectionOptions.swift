import ArgumentParser
import ChatClient
import EnvFile
import Foundation

/// Where to connect and with which token; shared by every subcommand.
struct ConnectionOptions: ParsableArguments {
    static let defaultURL = "ws://127.0.0.1:3000/ws"

    @Option(help: "Server URL, ws:// or wss:// (default: $CHAT_URL, else ws://127.0.0.1:$PORT/ws with PORT from the environment or .env as chat-server reads it, else \(defaultURL)).")
    var url: String?
    @Option(help: "Session token (default: $CHAT_TOKEN).")
    var token: String?
    @Option(help: "Read the session token from this file.")
    var tokenFile: String?
    @Option(help: "Directory of the development key pair (with --user).")
    var keysDir: String = ".dev-keys"
    @Flag(help: "Accept a self-signed or otherwise unverified TLS certificate (wss://).")
    var insecure = false
    @Option(help: "Keep the last message seq per conversation in this file, to catch up from there after a restart.")
    var state: String?
    @Option(help: ArgumentHelp("Longest wait between reconnection attempts, in seconds.", visibility: .hidden))
    var maxBackoff: Double = 30

    func serverURL() throws -> URL {
        let env = ProcessInfo.processInfo.environment["CHAT_URL"].flatMap { $0.isEmpty ? nil : $0 }
        let text = url ?? env ?? Self.localURL()
        guard let parsed = URL(string: text), let scheme = parsed.scheme?.lowercased(), ["ws", "wss"].contains(scheme),
              parsed.host != nil else {
            throw Failure("'\(text)' is not a ws:// or wss:// URL (for example \(Self.defaultURL))")
        }
        return parsed
    }

    /// The server `make run` starts from this directory: its PORT (environment, then `.env`).
    static func localURL(environment: [String: String] = ProcessInfo.processInfo.environment, dotEnv: String = ".env") -> String {
        let port = DotEnv.settings(environment: environment, fileText: try? String(contentsOfFile: dotEnv, encoding: .utf8))["PORT"]
        // PORT=0 lets the kernel pick: nothing to guess from here.
        guard let port, let number = Int(port), (1...65535).contains(number) else { return defaultURL }
        return "ws://127.0.0.1:\(number)/ws"
    }

    func tokenSource(developmentUser user: String?) throws -> TokenSource {
        if let token, !token.isEmpty { return .fixed(token) }
        if let tokenFile {
            guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
                throw Failure("cannot read the token file \(tokenFile)")
            }
            let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !trimmed.isEmpty else { throw Failure("the token file \(tokenFile) is empty") }
            return .fixed(trimmed)
        }
        if let user {
            do { return try .development(userID: user, keysDirectory: URL(fileURLWithPath: keysDir)) } catch {
                throw Failure("cannot use the development key in \(keysDir): \(error)")
            }
        }
        if let env = ProcessInfo.processInfo.environment["CHAT_TOKEN"], !env.isEmpty { return .fixed(env) }
        throw Failure("no token: pass --token, --token-file, --user <id> (development) or set CHAT_TOKEN")
    }

    func stateFile() -> ClientStateFile? { state.map(ClientStateFile.init(path:)) }

    /// A connection, not started yet, resuming from the state file when there is one.
    func makeConnection(developmentUser: String?) throws -> ChatConnection {
        var options = ChatConnection.Options(url: try serverURL(), insecureTLS: insecure)
        options.backoff = Backoff(base: 0.5, cap: max(0.1, maxBackoff))
        if let file = stateFile() {
            do { options.positions = try file.load() } catch { throw Failure("cannot read the state file \(file.path): \(error.localizedDescription)") }
        }
        let connection = try ChatConnection(options: options, tokens: try tokenSource(developmentUser: developmentUser))
        if let file = stateFile() {
            connection.onPositions = { positions in
                do { try file.save(positions) } catch { Output.warn("cannot write the state file \(file.path): \(error.localizedDescription)") }
            }
        }
        return connection
    }
}
