import ClerkAuth
import Foundation
import FuzzSupport

// One delivery: the input is split at the first three newlines into svix-id, svix-timestamp and
// svix-signature, the rest is the body. When the signature line is `sign`, the harness signs the body
// itself so the fuzzer also reaches the accepting path.
private let secret = try! WebhookSecret(parsing: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")   // set-up, not input
private let verifier = WebhookVerifier(secrets: [secret])
private let now = Date(timeIntervalSince1970: 1_700_000_000)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var lines: [String] = []
    var start = 0
    while lines.count < 3, let newline = bytes[start...].firstIndex(of: 0x0A) {
        lines.append(String(decoding: bytes[start..<newline], as: UTF8.self))
        start = newline + 1
    }
    let body = Array(bytes[start...])
    let values = ["svix-id": lines.count > 0 ? lines[0] : nil, "svix-timestamp": lines.count > 1 ? lines[1] : nil,
                  "svix-signature": lines.count > 2 ? lines[2] : nil]
    var headers = WebhookHeaders.from { values[$0] ?? nil }
    if headers.signature == "sign", let id = headers.id, let timestamp = headers.timestamp.flatMap({ Int($0) }) {
        headers.signature = WebhookVerifier.sign(secret: secret, id: id, timestamp: timestamp, body: body)
    }
    _ = try? verifier.verify(headers: headers, body: body, now: now)
    return 0
}

runFuzzer(fuzz)
