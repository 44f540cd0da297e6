import ChatDomain
import Foundation

/// The last seq per conversation, kept in a small JSON file (`--state`) so that a restarted client
/// syncs from where it stopped instead of showing everything again or missing what came meanwhile.
public struct ClientStateFile: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// nil when the file does not exist yet (a first run).
    public func load() throws -> [String: Int64]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard let json = JSONValue.parse(Array(data)), let positions = json["positions"]?.objectValue else {
            throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
        }
        return positions.compactMapValues(\.intValue)
    }

    /// Written to a temporary file and renamed, so a client killed mid-write leaves the old state.
    public func save(_ positions: [String: Int64]) throws {
        let json: JSONValue = ["positions": .object(positions.mapValues { .int($0) })]
        let temporary = path + ".tmp"
        try Data(json.encoded()).write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
    }
}
