import Foundation
import WebSocketServer

/// The browser app at `/`: the files of `web/` and the client library `clients/js/chat-client.js`,
/// read once at start-up into a table. A request path is only ever a key of that table, so no path
/// a client sends reaches the file system (no traversal, no symlink escapes, no directory listing).
final class WebApp {
    /// How the page gets session tokens.
    enum SignIn: Equatable {
        /// ClerkJS from the instance's Frontend API, `getToken()`.
        case clerk(publishableKey: String, frontendAPI: String)
        /// `POST /dev/token` ("sign in as"), development with the local key pair only.
        case development
        /// Neither: the page says what to configure.
        case unconfigured
    }

    struct Asset {
        let contentType: String
        let body: [UInt8]
        let etag: String
        /// The `v` query that makes a long-cached URL for it.
        let version: String
    }

    static let libraryPath = "/lib/chat-client.js"
    static let maxFiles = 200
    static let maxFileBytes = 4 << 20

    let signIn: SignIn
    private(set) var assets: [String: Asset] = [:]

    let root: URL
    /// Development: files edited while the server runs are served at the next request.
    let reloads: Bool
    private var signature: [String: Date] = [:]

    init(root: URL, signIn: SignIn, reloads: Bool = false) throws {
        self.root = root
        self.signIn = signIn
        self.reloads = reloads
        let (table, signature) = try Self.read(root: root, configJSON: Self.configJSON(signIn))
        assets = table
        self.signature = signature
    }

    /// The files of `web/` and the library, by URL path, and their modification times.
    static func files(root: URL) throws -> [String: URL] {
        let web = root.appendingPathComponent("web")
        var files: [String: URL] = [:]
        for (relative, url) in try regularFiles(under: web) { files["/" + relative] = url }
        let library = root.appendingPathComponent("clients/js/chat-client.js")
        if FileManager.default.isReadableFile(atPath: library.path) { files[libraryPath] = library }
        guard files["/index.html"] != nil else { throw WebAppError("\(web.path)/index.html is missing") }
        return files
    }

    static func modificationTimes(_ files: [String: URL]) -> [String: Date] {
        files.mapValues { (try? FileManager.default.attributesOfItem(atPath: $0.path)[.modificationDate] as? Date) ?? .distantPast }
    }

    static func read(root: URL, configJSON: String) throws -> ([String: Asset], [String: Date]) {
        let files = try files(root: root)
        let signature = modificationTimes(files)
        var assets: [String: Asset] = [:]
        for (path, url) in files where path != "/index.html" {
            assets[path] = asset(path: path, body: Array(try Data(contentsOf: url)))
        }
        // index.html names the other files by versioned URLs (long-cached; a change gives a new URL)
        // and carries the sign-in settings in a <meta> (no inline script under the CSP).
        var html = try String(contentsOf: files["/index.html"]!, encoding: .utf8)
        for (path, asset) in assets where path != libraryPath {   // the library is imported by app.js
            for attribute in ["src", "href"] {
                html = html.replacingOccurrences(of: "\(attribute)=\"\(path)\"", with: "\(attribute)=\"\(path)?v=\(asset.version)\"")
            }
        }
        html = html.replacingOccurrences(of: "<meta name=\"chat-config\" content=\"\">",
                                         with: "<meta name=\"chat-config\" content=\"\(attributeEscaped(configJSON))\">")
        let page = asset(path: "/index.html", body: Array(html.utf8))
        assets["/index.html"] = page
        assets["/"] = page
        return (assets, signature)
    }

    /// Development only: reads the files again when one was added, removed or changed (a directory
    /// walk and a few stats per request); a broken edit keeps the last good table.
    private func reloadIfChanged() {
        guard reloads, let files = try? Self.files(root: root), Self.modificationTimes(files) != signature,
              let (table, signature) = try? Self.read(root: root, configJSON: configJSON) else { return }
        assets = table
        self.signature = signature
    }

    /// What the page reads from `<meta name="chat-config">`.
    var configJSON: String { Self.configJSON(signIn) }

    static func configJSON(_ signIn: SignIn) -> String {
        var fields: [String: String] = ["webSocketPath": "/ws"]
        switch signIn {
        case .clerk(let key, let host):
            fields["signIn"] = "clerk"
            fields["publishableKey"] = key
            fields["clerkScript"] = "https://\(host)/npm/@clerk/clerk-js@5/dist/clerk.browser.js"
        case .development: fields["signIn"] = "development"
        case .unconfigured: fields["signIn"] = "unconfigured"
        }
        let data = (try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// `GET` of a known file: 200 (or 304 for a matching If-None-Match); nil: not one of the app's paths.
    func action(_ head: HTTPRequestHead) -> HTTPAction? {
        reloadIfChanged()
        guard let asset = assets[head.path] else { return nil }
        guard head.method == .get || head.method == .head else {
            var response = HTTPResponse.json(405, ["error": "method not allowed", "allow": "GET, HEAD"])
            response.headers.append(("allow", "GET, HEAD"))
            return .respond(response)
        }
        let versioned = (head.query ?? "").split(separator: "&").contains { $0 == "v=\(asset.version)" }
        var headers: [(String, String)] = [
            ("etag", asset.etag),
            // HTML and unversioned URLs are revalidated every time (a cheap 304); a versioned URL never changes.
            ("cache-control", versioned ? "public, max-age=31536000, immutable" : "no-cache"),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
        ]
        if asset.contentType.hasPrefix("text/html") {
            headers.append(("content-security-policy", contentSecurityPolicy(host: head.header("host"))))
            headers.append(("x-frame-options", "DENY"))
        }
        if let match = head.header("if-none-match"), Self.matches(match, etag: asset.etag) {
            return .respond(HTTPResponse(status: 304, contentType: asset.contentType, headers: headers, body: []))
        }
        var response = HTTPResponse(status: 200, contentType: asset.contentType, headers: headers, body: asset.body)
        response.headersOnly = head.method == .head
        return .respond(response)
    }

    /// No inline script or style, nothing from elsewhere but Clerk (in Clerk mode, what Clerk's
    /// documentation lists: its Frontend API, its images, Cloudflare's bot check, CSS-in-JS styles).
    func contentSecurityPolicy(host: String?) -> String {
        var script = ["'self'"], connect = ["'self'"], style = ["'self'"], image = ["'self'", "data:"]
        var frame = ["'none'"], worker = ["'none'"]
        // 'self' covers ws:/wss: of the same host in current browsers; older ones need them named.
        if let host, Self.isPlainHost(host) { connect += ["ws://\(host)", "wss://\(host)"] }
        if case .clerk(_, let frontendAPI) = signIn {
            script += ["https://\(frontendAPI)", "https://challenges.cloudflare.com"]
            connect += ["https://\(frontendAPI)"]
            style += ["'unsafe-inline'"]
            image += ["https://img.clerk.com"]
            frame = ["https://challenges.cloudflare.com"]
            worker = ["'self'", "blob:"]
        }
        return ["default-src 'none'", "script-src " + script.joined(separator: " "),
                "connect-src " + connect.joined(separator: " "), "style-src " + style.joined(separator: " "),
                "img-src " + image.joined(separator: " "), "font-src 'self'", "manifest-src 'self'",
                "frame-src " + frame.joined(separator: " "), "worker-src " + worker.joined(separator: " "),
                "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'", "object-src 'none'"]
            .joined(separator: "; ")
    }

    // MARK: - Locating and reading the files

    /// `WEB_ROOT` when set; else the working directory when it holds `web/index.html`; else the
    /// checkout the binary was built in (`.build/<triple>/<config>/chat-server`, found upwards).
    static func locate(configured: String?) -> URL? {
        if let configured { return URL(fileURLWithPath: configured) }
        let fm = FileManager.default
        var candidates = [URL(fileURLWithPath: fm.currentDirectoryPath)]
        if let exe = try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
            for _ in 0..<5 { candidates.append(dir); dir = dir.deletingLastPathComponent() }
        }
        return candidates.first { fm.isReadableFile(atPath: $0.appendingPathComponent("web/index.html").path) }
    }

    /// Regular files below `directory` (hidden files, symlinks and other kinds skipped), bounded.
    static func regularFiles(under directory: URL) throws -> [(String, URL)] {
        let fm = FileManager.default
        guard let walker = fm.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey],
                                         options: [.skipsHiddenFiles]) else { throw WebAppError("cannot read \(directory.path)") }
        let base = directory.standardizedFileURL.path
        var found: [(String, URL)] = []
        for case let url as URL in walker {
            let values = try url.resourceValues(forKeys: [.isRegularFileKey, .isSymbolicLinkKey, .fileSizeKey])
            guard values.isRegularFile == true, values.isSymbolicLink != true else { continue }
            guard (values.fileSize ?? 0) <= maxFileBytes else { throw WebAppError("\(url.path) is larger than \(maxFileBytes) bytes") }
            let path = url.standardizedFileURL.path
            guard path.hasPrefix(base + "/") else { continue }
            found.append((String(path.dropFirst(base.count + 1)), url))
            guard found.count <= maxFiles else { throw WebAppError("more than \(maxFiles) files in \(directory.path)") }
        }
        return found
    }

    static func asset(path: String, body: [UInt8]) -> Asset {
        let hash = fnv1a64(body)
        return Asset(contentType: contentType(path), body: body, etag: "\"\(hash)\"", version: String(hash.prefix(10)))
    }

    static func contentType(_ path: String) -> String {
        switch (path as NSString).pathExtension.lowercased() {
        case "html": return "text/html; charset=utf-8"
        case "css": return "text/css; charset=utf-8"
        case "js", "mjs": return "text/javascript; charset=utf-8"
        case "json", "map": return "application/json"
        case "webmanifest": return "application/manifest+json"
        case "svg": return "image/svg+xml"
        case "png": return "image/png"
        case "ico": return "image/x-icon"
        case "woff2": return "font/woff2"
        case "txt": return "text/plain; charset=utf-8"
        default: return "application/octet-stream"
        }
    }

    /// An ETag names content, not security: a fast non-cryptographic hash is enough.
    static func fnv1a64(_ bytes: [UInt8]) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return String(hash, radix: 16).leftPadded(to: 16)
    }

    static func matches(_ ifNoneMatch: String, etag: String) -> Bool {
        ifNoneMatch.split(separator: ",").contains { tag in
            let t = tag.trimmingCharacters(in: .whitespaces)
            return t == "*" || t == etag || t == "W/" + etag
        }
    }

    /// A Host header fit to be echoed into a header value: name or address and port, nothing else.
    static func isPlainHost(_ host: String) -> Bool {
        !host.isEmpty && host.utf8.count <= 255 && host.unicodeScalars.allSatisfy {
            CharacterSet.alphanumerics.contains($0) && $0.isASCII || ".-:[]".unicodeScalars.contains($0)
        }
    }

    static func attributeEscaped(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "\"", with: "&quot;")
            .replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}

struct WebAppError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
