import ChatDomain
import FuzzSupport

// A WebSocket text message as the server receives it: any bytes up to WS_MAX_MESSAGE_BYTES.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? ClientFrame.decode(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

runFuzzer(fuzz)
