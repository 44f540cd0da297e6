import ChatDomain
import FuzzSupport

// A webhook body after its signature held (Clerk's JSON envelope); also what backfill-users feeds it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? ClerkEvent.decode(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

runFuzzer(fuzz)
