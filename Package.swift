// swift-tools-version:6.0
import PackageDescription

// Layers (arrows point down): executables -> ChatServer -> adapters (WebSocketServer, MongoStore, ClerkAuth)
// -> ChatDomain. Only the adapters import a C module.
let package = Package(
    name: "swift-chat-backend",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "chat-server", targets: ["chat-server"]),
        .executable(name: "chat-client", targets: ["chat-client"]),
        .executable(name: "chat-bench", targets: ["chat-bench"]),
        .library(name: "ChatTesting", targets: ["ChatTesting"]),
        // The parsers of untrusted bytes, for the fuzz targets in fuzz/ (a separate package).
        .library(name: "ChatDomain", targets: ["ChatDomain"]),
        .library(name: "ClerkAuth", targets: ["ClerkAuth"]),
        .library(name: "EnvFile", targets: ["EnvFile"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        // C libraries, found through pkg-config.
        .systemLibrary(name: "CLibWebSockets", pkgConfig: "libwebsockets",
                       providers: [.apt(["libwebsockets-dev"])]),
        .systemLibrary(name: "CMongoC", pkgConfig: "libmongoc-1.0",
                       providers: [.apt(["libmongoc-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        // Builds lws structs with designated initializers and exposes macros Swift cannot import.
        .target(name: "CLwsShim", dependencies: ["CLibWebSockets"]),
        // Keeps libbson's over-aligned structs on the heap, where Swift can hold them as pointers.
        .target(name: "CMongoShim", dependencies: ["CMongoC"]),

        // Plain Swift: users, presence, webhook events, the wire protocol. No C, no I/O.
        .target(name: "ChatDomain"),
        // The service thread's identity and inbox: the isolation domain of sockets and sessions.
        .target(name: "ServiceLoop"),
        // Plain Swift: the `.env` file reader (no I/O; the caller reads the file).
        .target(name: "EnvFile"),
        // Svix webhook verification and Clerk session tokens (OpenSSL for HMAC and RSA).
        .target(name: "ClerkAuth", dependencies: ["ChatDomain", "COpenSSL"]),
        // libmongoc adapter: worker pool, BSON mapping, stores.
        .target(name: "MongoStore", dependencies: [
            "ChatDomain", "CMongoC", "CMongoShim", "ServiceLoop",
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // libwebsockets adapter: the service thread, HTTP exchanges, WebSocket sessions.
        .target(name: "WebSocketServer", dependencies: [
            "CLwsShim", "ServiceLoop",
            .product(name: "Logging", package: "swift-log"),
        ]),
        // libwebsockets client side: one service thread for many client sockets (chat-client, chat-bench).
        .target(name: "WebSocketClient", dependencies: ["CLwsShim"]),
        // Composition: configuration, routes, presence, metrics, shutdown.
        .target(name: "ChatServer", dependencies: [
            "ChatDomain", "ClerkAuth", "EnvFile", "MongoStore", "ServiceLoop", "WebSocketServer",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // Starts the embedded database and real server processes for integration tests, and runs the
        // chat channel in-process against in-memory connections (InProcessChat).
        .target(name: "ChatTesting", dependencies: [
            "ClerkAuth", "ChatDomain", "ChatServer", "MongoStore", "ServiceLoop", "WebSocketServer",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "chat-server", dependencies: [
            "ChatServer", "ClerkAuth", "ChatDomain", "EnvFile",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // A typed client of the documented protocol over WebSocketClient (chat-client and chat-bench).
        .target(name: "ChatClient", dependencies: ["WebSocketClient", "ChatDomain", "ClerkAuth"]),
        .executableTarget(name: "chat-client", dependencies: [
            "ChatClient", "ClerkAuth", "EnvFile",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "chat-bench", dependencies: [
            "ChatClient", "WebSocketClient", "ClerkAuth", "ChatDomain", "COpenSSL",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Histogram", package: "hdrhistogram-swift"),
        ]),

        .testTarget(name: "ChatDomainTests", dependencies: ["ChatDomain"]),
        .testTarget(name: "ClerkAuthTests", dependencies: ["ClerkAuth", "ChatDomain"]),
        .testTarget(name: "ChatServerTests", dependencies: [
            "ChatServer", "ChatTesting", "ClerkAuth", "ChatDomain", "EnvFile", "MongoStore", "ServiceLoop",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ChatClientTests", dependencies: ["ChatClient", "ChatDomain"]),
    ],
    swiftLanguageModes: [.v6]
)
