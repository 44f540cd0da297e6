import Foundation

/// Silences libwebsockets' own stderr log lines ("N: LWS: 4.1.6...", "W: lws_client_handshake...")
/// in a terminal client: the connection reports failures itself, in words. WebSocketClientLoop has
/// no log setting and ChatClient imports no C module, so the symbol is looked up at run time.
enum LwsLogging {
    private typealias SetLogLevel = @convention(c) (Int32, OpaquePointer?) -> Void
    private static let once: Void = {
        #if os(Linux)
        let everywhere: UnsafeMutableRawPointer? = nil                      // RTLD_DEFAULT in glibc
        #else
        let everywhere = UnsafeMutableRawPointer(bitPattern: -2)            // RTLD_DEFAULT in Darwin
        #endif
        guard let symbol = dlsym(everywhere, "lws_set_log_level") else { return }
        unsafeBitCast(symbol, to: SetLogLevel.self)(0, nil)
    }()

    static func quiet() { _ = once }
}
