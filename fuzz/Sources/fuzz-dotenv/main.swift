import EnvFile
import FuzzSupport

// A `.env` file, read as UTF-8 (invalid sequences repaired) the way Config reads it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = DotEnv.parse(String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self))
    return 0
}

runFuzzer(fuzz)
