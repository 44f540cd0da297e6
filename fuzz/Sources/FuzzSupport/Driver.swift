#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

// SwiftPM (debug builds on Linux) renames an executable's entry point to `<module>_main` and links
// `main` to it, so libFuzzer's own `main` cannot be used: each target's top-level code calls
// libFuzzer's driver instead, with its `LLVMFuzzerTestOneInput`.
@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Int32

/// Runs libFuzzer with the process's arguments and exits with its status.
public func runFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>, Int) -> Int32) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}
