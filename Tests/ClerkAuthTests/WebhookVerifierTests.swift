import ClerkAuth
import Foundation
import Testing

/// One official Svix / Standard Webhooks vector.
struct WebhookVector: Sendable, CustomTestStringConvertible {
    let name: String
    let secret: String
    let id: String
    let timestamp: Int
    let body: [UInt8]
    let expected: String
    var testDescription: String { name }

    var headers: WebhookHeaders { WebhookHeaders(id: id, timestamp: String(timestamp), signature: expected) }
    var sentAt: Date { Date(timeIntervalSince1970: TimeInterval(timestamp)) }
    func verifier() throws -> WebhookVerifier { WebhookVerifier(secrets: [try WebhookSecret(parsing: secret)]) }
}

let vectorA = WebhookVector(name: "A", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                            timestamp: 1614265330, body: Array(#"{"test": 2432232314}"#.utf8),
                            expected: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")

func withBody(_ name: String, _ body: [UInt8], _ expected: String) -> WebhookVector {
    WebhookVector(name: name, secret: vectorA.secret, id: vectorA.id, timestamp: vectorA.timestamp, body: body, expected: expected)
}

let officialVectors: [WebhookVector] = [
    vectorA,
    WebhookVector(name: "B", secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                  timestamp: 1649367553, body: Array(#"{"email":"test@example.com","username":"test_user"}"#.utf8),
                  expected: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="),
    WebhookVector(name: "C", secret: "whsec_plJ3nmyCDGBKInavdOK15jsl", id: "msg_loFOjxBNrRLzqYUf",
                  timestamp: 1731705121, body: Array(#"{"event_type":"ping","data":{"success":true}}"#.utf8),
                  expected: "v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0="),
    withBody("D1", Array(repeating: UInt8(ascii: "a"), count: 1_048_576), "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A="),
    withBody("D2", Array(repeating: UInt8(ascii: "a"), count: 262_144), "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0="),
    withBody("D3", Array(repeating: UInt8(ascii: "a"), count: 262_143), "v1,NTItnqyWMoFhk2Bbe5V/BMdcFRWgcSQaTgqLHX7FC7c="),
]

@Suite struct WebhookVerifierTests {
    // MARK: Official vectors

    @Test(arguments: officialVectors)
    func signReproducesTheOfficialVector(_ vector: WebhookVector) throws {
        let secret = try WebhookSecret(parsing: vector.secret)
        #expect(WebhookVerifier.sign(secret: secret, id: vector.id, timestamp: vector.timestamp, body: vector.body) == vector.expected)
    }

    @Test(arguments: officialVectors)
    func verifyAcceptsTheOfficialVectorAtItsTimestamp(_ vector: WebhookVector) throws {
        #expect(try vector.verifier().verify(headers: vector.headers, body: vector.body, now: vector.sentAt) == vector.id)
    }

    // MARK: Headers

    @Test func eachMissingHeaderIsNamed() throws {
        let verifier = try vectorA.verifier()
        let cases: [(WebhookHeaders, String)] = [
            (WebhookHeaders(id: nil, timestamp: "1614265330", signature: vectorA.expected), "missing_id"),
            (WebhookHeaders(id: vectorA.id, timestamp: nil, signature: vectorA.expected), "missing_timestamp"),
            (WebhookHeaders(id: vectorA.id, timestamp: "1614265330", signature: nil), "missing_signature"),
            (WebhookHeaders(id: "", timestamp: "1614265330", signature: vectorA.expected), "missing_id"),
        ]
        for (headers, reason) in cases {
            let error = #expect(throws: WebhookRejection.self) {
                try verifier.verify(headers: headers, body: vectorA.body, now: vectorA.sentAt)
            }
            #expect(error?.reason == reason)
        }
    }

    @Test func unbrandedHeadersAreUsedWhenNoSvixHeaderIsPresent() throws {
        let sent = ["webhook-id": vectorA.id, "webhook-timestamp": "1614265330", "webhook-signature": vectorA.expected]
        let headers = WebhookHeaders.from { sent[$0] }
        #expect(headers == vectorA.headers)
        #expect(try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
    }

    @Test func svixHeadersWinOverUnbrandedOnes() throws {
        let verifier = try vectorA.verifier()
        let wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        let svixRight = ["svix-id": vectorA.id, "svix-timestamp": "1614265330", "svix-signature": vectorA.expected,
                         "webhook-id": "msg_other", "webhook-timestamp": "1614265330", "webhook-signature": wrong]
        #expect(try verifier.verify(headers: .from { svixRight[$0] }, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)

        let svixWrong = ["svix-id": vectorA.id, "svix-timestamp": "1614265330", "svix-signature": wrong,
                         "webhook-id": vectorA.id, "webhook-timestamp": "1614265330", "webhook-signature": vectorA.expected]
        #expect(throws: WebhookRejection.noMatchingSignature) {
            try verifier.verify(headers: .from { svixWrong[$0] }, body: vectorA.body, now: vectorA.sentAt)
        }
        // The sets are never mixed: a partial svix-* set does not borrow the unbranded signature.
        let partial = ["svix-id": vectorA.id, "svix-timestamp": "1614265330", "webhook-signature": vectorA.expected]
        #expect(throws: WebhookRejection.missingHeader("signature")) {
            try verifier.verify(headers: .from { partial[$0] }, body: vectorA.body, now: vectorA.sentAt)
        }
    }

    // MARK: Timestamp

    @Test(arguments: ["hello", "", " 1614265330", "-1614265330", "+1614265330", "1614265330.0", "1e9", "99999999999999999999"])
    func nonDigitTimestampIsInvalid(_ timestamp: String) throws {
        var headers = vectorA.headers
        headers.timestamp = timestamp
        let expected: WebhookRejection = timestamp.isEmpty ? .missingHeader("timestamp") : .invalidTimestamp
        #expect(throws: expected) { try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt) }
    }

    @Test func windowIsThreeHundredSecondsBothWays() throws {
        let verifier = try vectorA.verifier()
        func check(_ offset: TimeInterval) throws -> String {
            try verifier.verify(headers: vectorA.headers, body: vectorA.body, now: vectorA.sentAt.addingTimeInterval(offset))
        }
        #expect(try check(300) == vectorA.id)
        #expect(try check(-300) == vectorA.id)
        #expect(throws: WebhookRejection.timestampTooOld) { try check(301) }
        #expect(throws: WebhookRejection.timestampTooNew) { try check(-301) }
    }

    @Test func timestampIsCheckedBeforeTheSignature() throws {
        var headers = vectorA.headers
        headers.signature = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        #expect(throws: WebhookRejection.timestampTooOld) {
            try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt.addingTimeInterval(301))
        }
    }

    @Test func headersAloneDecideWhatCanBeRefusedBeforeTheBody() throws {
        let verifier = try vectorA.verifier()
        let at = vectorA.sentAt
        #expect(throws: Never.self) { try verifier.checkHeaders(vectorA.headers, now: at) }   // a wrong body is not its business
        var headers = vectorA.headers
        headers.id = nil
        #expect(throws: WebhookRejection.missingHeader("id")) { try verifier.checkHeaders(headers, now: at) }
        #expect(throws: WebhookRejection.timestampTooOld) { try verifier.checkHeaders(vectorA.headers, now: at.addingTimeInterval(301)) }
        #expect(throws: WebhookRejection.timestampTooNew) { try verifier.checkHeaders(vectorA.headers, now: at.addingTimeInterval(-301)) }
        headers = vectorA.headers
        headers.signature = "v2,abc"
        #expect(throws: WebhookRejection.malformedSignature) { try verifier.checkHeaders(headers, now: at) }
    }

    @Test func freshDeliveryVerifiesWithTheRealClock() throws {
        let secret = try WebhookSecret(parsing: vectorA.secret)
        let now = Int(Date().timeIntervalSince1970)
        let signature = WebhookVerifier.sign(secret: secret, id: "msg_now", timestamp: now, body: vectorA.body)
        let headers = WebhookHeaders(id: "msg_now", timestamp: String(now), signature: signature)
        #expect(try WebhookVerifier(secrets: [secret]).verify(headers: headers, body: vectorA.body) == "msg_now")
    }

    // MARK: Signature header

    @Test(arguments: [
        ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=", WebhookRejection.noMatchingSignature),  // last char changed
        ("v1,", .malformedSignature),
        ("v1,g0hM9SsE", .malformedSignature),
        ("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE", .malformedSignature),  // padding dropped
        ("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", .malformedSignature),  // right bytes, wrong version
        ("v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", .malformedSignature),
        ("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", .malformedSignature),
        ("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", .noMatchingSignature),
    ])
    func badSignatureIsRejected(_ signature: String, _ expected: WebhookRejection) throws {
        var headers = vectorA.headers
        headers.signature = signature
        let error = #expect(throws: expected) {
            try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt)
        }
        #expect(error.map { !$0.reason.contains("g0hM") && !$0.reason.contains("Ceo5") } ?? false)
    }

    @Test func decoysAreSkippedAndTheRealEntryPasses() throws {
        var headers = vectorA.headers
        headers.signature = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= "
            + "garbage v1, v1,g0hM " + vectorA.expected
        #expect(try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
    }

    @Test func onlyTheFirstSixteenEntriesAreExamined() throws {
        let decoy = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        var headers = vectorA.headers
        headers.signature = (Array(repeating: decoy, count: 15) + [vectorA.expected]).joined(separator: " ")
        #expect(try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
        headers.signature = (Array(repeating: decoy, count: 16) + [vectorA.expected]).joined(separator: " ")
        #expect(throws: WebhookRejection.noMatchingSignature) {
            try vectorA.verifier().verify(headers: headers, body: vectorA.body, now: vectorA.sentAt)
        }
    }

    @Test func reasonsAreShortSnakeCaseLabels() {
        let all: [WebhookRejection] = [.missingHeader("id"), .missingHeader("timestamp"), .missingHeader("signature"),
                                       .invalidTimestamp, .timestampTooOld, .timestampTooNew, .malformedSignature, .noMatchingSignature]
        #expect(all.map(\.reason) == ["missing_id", "missing_timestamp", "missing_signature", "invalid_timestamp",
                                      "stale_timestamp", "future_timestamp", "malformed_signature", "bad_signature"])
    }

    // MARK: Body

    @Test(arguments: [
        withBody("non-ASCII", Array(#"{"name":"Zoë Ångström 🎉","note":"naïve café"}"#.utf8), "v1,PyLQ4AnY7GF53D880uRmUk4U3Eal6urPMClKk8MUNPA="),
        withBody("empty", [], "v1,v48jdbgvh29KJz2Qc+ghw8G6vG3nAKnujWBg8oM/62A="),
    ])
    func bodyIsSignedByteExactly(_ vector: WebhookVector) throws {
        // Expected values computed independently with Python's hmac module.
        try signReproducesTheOfficialVector(vector)
        try verifyAcceptsTheOfficialVectorAtItsTimestamp(vector)
    }

    @Test(arguments: [Array(#"{"test": 2432232314}"#.utf8) + [0x0A], Array(#"{"test":2432232314}"#.utf8)])
    func oneByteChangeInTheBodyFails(_ body: [UInt8]) throws {
        #expect(throws: WebhookRejection.noMatchingSignature) {
            try vectorA.verifier().verify(headers: vectorA.headers, body: body, now: vectorA.sentAt)
        }
    }

    // MARK: Secrets

    @Test func secretWorksWithAndWithoutPrefix() throws {
        let bare = WebhookVerifier(secrets: [try WebhookSecret(parsing: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")])
        #expect(try bare.verify(headers: vectorA.headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
        #expect(try vectorA.verifier().verify(headers: vectorA.headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
    }

    @Test(arguments: [
        ("", WebhookSecretError.empty), ("whsec_", .empty), ("   ", .empty),
        ("MDEyMzQ1Njc4OWFiY2Rl", .tooShort(byteCount: 15)),
        ("whsec_not*base64!", .notBase64),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", .notBase64),  // stray padding
        ("whsec_MDEyMzQ1Njc4OWFiY2RlZg", .notBase64),  // padding missing
        ("whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw", .notBase64),  // base64url alphabet
        ("whsec_MfKQ9r8GKYqrTwjUPD8I LPZIo2LaLaSw", .notBase64),
    ])
    func badSecretIsRefusedWithoutEchoingIt(_ text: String, _ expected: WebhookSecretError) {
        let error = #expect(throws: expected) { try WebhookSecret(parsing: text) }
        let description = error.map { "\($0)" } ?? ""
        #expect(!description.isEmpty)
        if text.count > 8 { #expect(!description.contains(text.dropFirst(6).prefix(8))) }
    }

    @Test func sixteenByteSecretIsEnoughAndItsDescriptionIsRedacted() throws {
        let secret = try WebhookSecret(parsing: "whsec_MDEyMzQ1Njc4OWFiY2RlZg==")
        #expect("\(secret)" == "WebhookSecret(redacted)")
        #expect(!String(reflecting: secret).contains("MDEy"))
    }

    @Test(arguments: ["whsec_cm90YXRpb24tb2xkLXNlY3JldC1ieXRlcyE= whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                      "whsec_cm90YXRpb24tb2xkLXNlY3JldC1ieXRlcyE=,MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                      " whsec_cm90YXRpb24tb2xkLXNlY3JldC1ieXRlcyE= ,  whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"])
    func rotationListMatchesTheSecondSecret(_ list: String) throws {
        let verifier = try WebhookVerifier(secretList: list)
        #expect(try verifier.verify(headers: vectorA.headers, body: vectorA.body, now: vectorA.sentAt) == vectorA.id)
    }

    @Test func rotationListRefusesEmptyAndBadEntries() {
        #expect(throws: WebhookSecretError.empty) { try WebhookVerifier(secretList: " , ") }
        #expect(throws: WebhookSecretError.notBase64) { try WebhookVerifier(secretList: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_!!") }
    }

    @Test func wrongSecretAloneFails() throws {
        let verifier = try WebhookVerifier(secretList: "whsec_cm90YXRpb24tb2xkLXNlY3JldC1ieXRlcyE=")
        #expect(throws: WebhookRejection.noMatchingSignature) {
            try verifier.verify(headers: vectorA.headers, body: vectorA.body, now: vectorA.sentAt)
        }
    }
}
