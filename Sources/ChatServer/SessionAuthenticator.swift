import ClerkAuth
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import ServiceLoop

/// Verifies Clerk session tokens with the configured keys (service thread). With a JWKS source the
/// keys are fetched off the service thread, cached, and fetched again when a token names an unknown
/// `kid` (at most every 30 s); tokens waiting for that fetch are verified when it lands.
final class SessionAuthenticator {
    enum Outcome {
        case verified(SessionClaims)
        case refused(TokenRejection)
        /// Keys are being fetched; `verify` will be called again through the waiter.
        case pending
    }

    private let settings: ChannelSettings
    private let logger: Logger
    private let loop: ServiceLoop
    private var verifier: SessionTokenVerifier?
    private var fetching = false
    /// The last fetch caused by an unknown `kid`: such fetches are at most one per 30 s, so that
    /// tokens with made-up key ids cannot make the server hammer the JWKS endpoint.
    private var lastUnknownKidFetch = Date.distantPast
    private var waiters: [() -> Void] = []

    init(loop: ServiceLoop, settings: ChannelSettings, logger: Logger) {
        self.loop = loop
        self.settings = settings
        self.logger = logger
        if case .pem(let key) = settings.keySource {
            verifier = SessionTokenVerifier(keys: [nil: key], authorizedParties: settings.authorizedParties, issuer: settings.issuer)
        }
    }

    func start() {
        if case .jwks = settings.keySource { fetchKeys() }
    }

    func verify(_ token: String, whenKeysArrive retry: @escaping () -> Void) -> Outcome {
        guard case .jwks = settings.keySource else {
            guard let verifier else { return .refused(.unknownKey) }
            do { return .verified(try verifier.verify(token)) } catch { return .refused(error) }
        }
        if let verifier {
            do { return .verified(try verifier.verify(token)) } catch .unknownKey {
                guard fetching || Date().timeIntervalSince(lastUnknownKidFetch) > 30 else { return .refused(.unknownKey) }
                if !fetching { lastUnknownKidFetch = Date() }
            } catch { return .refused(error) }
        }
        waiters.append(retry)
        fetchKeys()
        return .pending
    }

    private func fetchKeys() {
        guard case .jwks(let url) = settings.keySource, !fetching else { return }
        fetching = true
        let (logger, loop) = (self.logger, self.loop)
        let me = ServiceBound(self, loop: loop)
        URLSession.shared.dataTask(with: url) { data, response, error in
            var keys: [String: RSAPublicKey]?
            if let data, (response as? HTTPURLResponse)?.statusCode == 200 { keys = try? JWKS.parse(Array(data)) }
            if keys == nil { logger.error("JWKS fetch failed", metadata: ["url": "\(url)", "error": "\(error.map { "\($0)" } ?? "bad answer")"]) }
            let found = keys
            loop.post { me.value.keysArrived(found) }
        }.resume()
    }

    private func keysArrived(_ keys: [String: RSAPublicKey]?) {
        fetching = false
        if let keys, !keys.isEmpty {
            let byID = Dictionary(uniqueKeysWithValues: keys.map { (Optional($0.key), $0.value) })
            verifier = SessionTokenVerifier(keys: byID, authorizedParties: settings.authorizedParties, issuer: settings.issuer)
        }
        let waiting = waiters
        waiters.removeAll()
        for retry in waiting { retry() }
    }
}
