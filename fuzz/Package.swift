// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for the parsers of untrusted bytes. A separate package so that `make test` and
// `make run` never build them: `make fuzz` (scripts/fuzz.sh) builds them with
// `-sanitize=fuzzer,address` and runs each for a bounded time on its seed corpus (corpus/<target>/).
let package = Package(
    name: "chat-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "swift-chat-backend", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        .executableTarget(name: "fuzz-client-frame", dependencies: [
            "FuzzSupport",
            .product(name: "ChatDomain", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-webhook", dependencies: [
            "FuzzSupport",
            .product(name: "ClerkAuth", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-clerk-event", dependencies: [
            "FuzzSupport",
            .product(name: "ChatDomain", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-jwt", dependencies: [
            "FuzzSupport",
            .product(name: "ClerkAuth", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-jwks", dependencies: [
            "FuzzSupport",
            .product(name: "ClerkAuth", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-pem", dependencies: [
            "FuzzSupport",
            .product(name: "ClerkAuth", package: "swift-chat-backend"),
        ]),
        .executableTarget(name: "fuzz-dotenv", dependencies: [
            "FuzzSupport",
            .product(name: "EnvFile", package: "swift-chat-backend"),
        ]),
    ],
    swiftLanguageModes: [.v5]
)
