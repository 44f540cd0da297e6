import ArgumentParser
import ChatClient
import ChatDomain
import Foundation

/// `chat-client script`: requests as JSON lines on stdin; every reply and event as JSON lines on stdout.
struct ScriptCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "script",
        abstract: "Read JSON requests from stdin (one per line), print every reply and event as JSON lines.",
        discussion: """
            Input: one chat.v1 request object per line, e.g. {"type":"message.send","conversationId":"...","text":"hi"}. \
            "id" is optional (default: the line number, as a string); message.send without "clientId" gets a random one. \
            Blank lines and lines starting with # are skipped. The client authenticates, reconnects and catches up by itself.
            Output: replies {"type":"ok"|"error","id":...}, events (message, message.updated, message.deleted, read, \
            typing, conversation, presence) and connection changes (welcome, disconnected). At the end of input the \
            client waits for outstanding replies, then exits.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var identity: IdentityOption

    func run() throws {
        try guarded {
            let chat = try connection.makeConnection(developmentUser: identity.user)
            let outstanding = DispatchGroup()
            chat.onEvent = { event in
                if case .failed(let error) = event { Output.fail(error.description) }
                Output.json(event.json)
            }
            chat.start()
            var lineNumber = 0
            while let line = readLine(strippingNewline: true) {
                lineNumber += 1
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
                guard case .object(var fields)? = JSONValue.parse(trimmed) else {
                    Output.json(["type": "error", "id": .string(String(lineNumber)), "code": "bad_json",
                                 "message": .string("line \(lineNumber) is not one JSON object")])
                    continue
                }
                let id = fields.removeValue(forKey: "id") ?? .string(String(lineNumber))
                guard let type = fields.removeValue(forKey: "type")?.stringValue else {
                    Output.json(["type": "error", "id": id, "code": "bad_request", "message": "type is required"])
                    continue
                }
                if type == "auth" || type == "refresh" {
                    Output.json(["type": "error", "id": id, "code": "bad_request", "message": "the client authenticates by itself"])
                    continue
                }
                if type == "message.send" && fields["clientId"] == nil { fields["clientId"] = .string(UUID().uuidString.lowercased()) }
                outstanding.enter()
                chat.request(type: type, fields: fields) { result in
                    switch result {
                    case .success(let data): Output.json(["type": "ok", "id": id, "data": .object(data)])
                    case .failure(.server(let code, let message)):
                        Output.json(["type": "error", "id": id, "code": .string(code), "message": .string(message)])
                    case .failure(let error):
                        Output.json(["type": "error", "id": id, "code": "client", "message": .string(error.description)])
                    }
                    outstanding.leave()
                }
            }
            if outstanding.wait(timeout: .now() + BlockingSession.replyTimeout) == .timedOut {
                Output.warn("gave up waiting for replies")
            }
            let closed = DispatchSemaphore(value: 0)
            chat.close { closed.signal() }
            _ = closed.wait(timeout: .now() + 2)
        }
    }
}
