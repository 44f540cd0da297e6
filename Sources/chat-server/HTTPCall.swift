import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A blocking HTTP call for the command-line tools (never used inside the server's service thread).
enum HTTPCall {
    static func send(_ request: URLRequest) throws -> (Int, String) {
        let done = DispatchSemaphore(value: 0)
        var result: Result<(Int, String), Error> = .failure(URLError(.unknown))
        URLSession.shared.dataTask(with: request) { data, response, error in
            if let error { result = .failure(error) } else {
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                result = .success((status, String(decoding: data ?? Data(), as: UTF8.self)))
            }
            done.signal()
        }.resume()
        done.wait()
        return try result.get()
    }
}
