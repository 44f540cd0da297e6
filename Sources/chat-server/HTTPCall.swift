import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A blocking HTTP call for the command-line tools (never used inside the server's service thread).
enum HTTPCall {
    /// Written by URLSession's queue before the semaphore is signalled, read after the wait.
    private final class Outcome: @unchecked Sendable {   // unchecked: the semaphore orders the write before the read
        var result: Result<(Int, String), Error> = .failure(URLError(.unknown))
    }

    /// The status and body; a transport failure is a ToolFailure naming the host and the reason in
    /// words (`what` names the other side, e.g. "chat-server"), never Foundation's error dump.
    static func send(_ request: URLRequest, what: String) throws -> (Int, String) {
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error { outcome.result = .failure(error) } else {
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                outcome.result = .success((status, String(decoding: data ?? Data(), as: UTF8.self)))
            }
            done.signal()
        }.resume()
        done.wait()
        do { return try outcome.result.get() } catch {
            throw ToolFailure.failed(describe(error, url: request.url, what: what))
        }
    }

    static func describe(_ error: Error, url: URL?, what: String) -> String {
        let target = url.map { u in "\(u.scheme ?? "http")://\(u.host ?? "")\(u.port.map { ":\($0)" } ?? "")" } ?? "the server"
        let raw = (error as NSError).code
        let code: URLError.Code? = (error as? URLError)?.code ?? URLError.Code(rawValue: raw)
        let reason: String
        switch code {
        case .cannotConnectToHost: reason = "connection refused: is \(what) running there?"
        case .timedOut: reason = "timed out"
        case .cannotFindHost, .dnsLookupFailed: reason = "unknown host"
        case .networkConnectionLost: reason = "the connection was dropped"
        case .notConnectedToInternet: reason = "no network"
        case .secureConnectionFailed, .serverCertificateUntrusted, .serverCertificateHasBadDate,
             .serverCertificateNotYetValid, .serverCertificateHasUnknownRoot:
            reason = "TLS handshake failed"
        case .badURL, .unsupportedURL: reason = "not a usable URL"
        default: reason = "network error \(raw)"
        }
        return "cannot reach \(what) at \(target) (\(reason))"
    }
}
