// swift-tools-version:6.0
import PackageDescription

// libFuzzer targets for the parsers of untrusted bytes. A separate package so that `make test` and
// `make run` never build them: `make fuzz` (scripts/fuzz.sh) builds them with
// `-sanitize=fuzzer,address` and runs each for a bounded time on its seed corpus (corpus/<target>/).
// Each target fuzzes one parser and links only the library that holds it.
let targets: [(name: String, library: String)] = [
    ("fuzz-client-frame", "ChatDomain"),
    ("fuzz-webhook", "ClerkAuth"),
    ("fuzz-clerk-event", "ChatDomain"),
    ("fuzz-jwt", "ClerkAuth"),
    ("fuzz-jwks", "ClerkAuth"),
    ("fuzz-pem", "ClerkAuth"),
    ("fuzz-dotenv", "EnvFile"),
]

let package = Package(
    name: "chat-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "swift-chat-backend", path: "..")],
    targets: [.target(name: "FuzzSupport")] + targets.map { target in
        .executableTarget(name: target.name, dependencies: [
            "FuzzSupport",
            .product(name: target.library, package: "swift-chat-backend"),
        ])
    },
    swiftLanguageModes: [.v6]
)
