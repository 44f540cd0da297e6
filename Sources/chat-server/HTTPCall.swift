import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A blocking HTTP call for the command-line tools (never used inside the server's service thread).
enum HTTPCall {
    /// Written by URLSession's queue before the semaphore is signalled, read after the wait.
    private final class Outcome: @unchecked Sendable {
        var result: Result<(Int, String), Error> = .failure(URLError(.unknown))
    }

    static func send(_ request: URLRequest) throws -> (Int, String) {
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
        return try outcome.result.get()
    }
}
