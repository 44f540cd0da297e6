import ClerkAuth
import FuzzSupport

// A JWKS document as fetched from CLERK_JWKS_URL (or the publishable key's instance).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? JWKS.parse(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

runFuzzer(fuzz)
