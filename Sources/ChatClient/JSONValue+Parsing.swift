import ChatDomain
import Foundation

/// Reading server frames into `JSONValue` (ChatDomain only encodes it). JSONDecoder keeps `true` and
/// `1` apart, which JSONSerialization's NSNumber bridging does not.
extension JSONValue {
    public static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(Decoded.self, from: Data(bytes)).value
    }

    public static func parse(_ text: String) -> JSONValue? { parse(Array(text.utf8)) }

    private struct Decoded: Decodable {
        let value: JSONValue
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { value = .null }
            else if let b = try? c.decode(Bool.self) { value = .bool(b) }
            else if let i = try? c.decode(Int64.self) { value = .int(i) }
            else if let d = try? c.decode(Double.self) { value = .double(d) }
            else if let s = try? c.decode(String.self) { value = .string(s) }
            else if let a = try? c.decode([Decoded].self) { value = .array(a.map(\.value)) }
            else { value = .object(try c.decode([String: Decoded].self).mapValues(\.value)) }
        }
    }

    public var text: String {
        String(decoding: encoded(), as: UTF8.self)
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var objectValue: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }
    public var dateValue: Date? { stringValue.flatMap(JSONDates.parse) }
}

/// RFC 3339 timestamps as the server writes them (milliseconds, UTC), and without fraction.
public enum JSONDates {
    public static func parse(_ text: String) -> Date? {
        let withFraction = ISO8601DateFormatter()
        withFraction.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = withFraction.date(from: text) { return d }
        return ISO8601DateFormatter().date(from: text)
    }
}
