/// Any JSON value, so claims of the wrong type are told apart from absent ones.
/// Named apart from ChatDomain.JSONValue, which the test target also sees.
enum ClaimValue: Decodable, Equatable {
    case null, bool(Bool), number(Double), string(String), array([ClaimValue]), object([String: ClaimValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([ClaimValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: ClaimValue].self)) }
    }

    var string: String? { if case .string(let value) = self { value } else { nil } }
    var number: Double? { if case .number(let value) = self { value } else { nil } }
}
