import ArgumentParser

/// `--user <id>`: connect as this user with a token minted from the development key.
struct IdentityOption: ParsableArguments {
    @Option(help: "Development: connect as this user id, minting a token with the local key (like chat-server mint-token).")
    var user: String?
}
