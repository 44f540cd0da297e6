import ChatClient
import ChatDomain
import Foundation

/// A connection driven from the main thread by the one-shot subcommands: waits for `welcome`, for
/// replies and for events, each with a deadline.
final class BlockingSession: @unchecked Sendable {   // unchecked: events, welcome and failure under `condition`
    static let replyTimeout: TimeInterval = 20

    let connection: ChatConnection
    private let condition = NSCondition()
    private var events: [ChatEvent] = []
    private var welcomed = false
    private var failure: ChatClientError?
    private let developmentKeys: String?

    init(_ options: ConnectionOptions, developmentUser: String?) throws {
        connection = try options.makeConnection(developmentUser: developmentUser)
        developmentKeys = developmentUser == nil ? nil : options.keysDir
        connection.onEvent = { [weak self] event in self?.push(event) }
    }

    private func push(_ event: ChatEvent) {
        condition.lock()
        switch event {
        case .connected: welcomed = true
        case .failed(let error): failure = error
        default: break
        }
        events.append(event)
        condition.broadcast()
        condition.unlock()
    }

    func connect(timeout: TimeInterval = replyTimeout) throws {
        connection.start()
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while !welcomed && failure == nil {
            if !condition.wait(until: deadline) { throw Failure("no welcome from the server within \(Int(timeout)) s") }
        }
        if let failure { throw explain(failure) }
    }

    /// The request's `ok` data, or a Failure for its error frame.
    func call(_ request: ClientRequest, timeout: TimeInterval = replyTimeout) throws -> [String: JSONValue] {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        connection.request(request) { result in box.result = result; done.signal() }
        guard done.wait(timeout: .now() + timeout) == .success, let result = box.result else {
            throw Failure("no reply to \(request.type) from the server within \(Int(timeout)) s")
        }
        switch result {
        case .success(let data): return data
        case .failure(let error): throw explain(error)
        }
    }

    /// The next event, or nil at the deadline; a Failure when the connection gave up.
    func nextEvent(until deadline: Date) throws -> ChatEvent? {
        condition.lock()
        defer { condition.unlock() }
        while events.isEmpty {
            if let failure { throw explain(failure) }
            if !condition.wait(until: deadline) { return nil }
        }
        return events.removeFirst()
    }

    /// Closes politely (the server sees a close frame, not a dropped socket), waiting a moment at most.
    func close() {
        let done = DispatchSemaphore(value: 0)
        connection.close { done.signal() }
        _ = done.wait(timeout: .now() + 2)
    }

    private func explain(_ error: ChatClientError) -> Failure {
        if case .tokenRefused = error, let developmentKeys {
            return Failure("\(error) — is \(developmentKeys)/ the key pair the server trusts?")
        }
        return Failure(error.description)
    }

    private final class ResultBox: @unchecked Sendable {   // unchecked: written on the loop thread before `condition` is signalled, read after the wait
        var result: Result<[String: JSONValue], ChatClientError>?
    }
}
