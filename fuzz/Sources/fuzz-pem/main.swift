import ClerkAuth
import FuzzSupport

// CLERK_JWT_KEY: PEM text (one-line `\n` form included) through OpenSSL's PEM and DER readers.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? RSAPublicKey(pem: String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self))
    return 0
}

runFuzzer(fuzz)
