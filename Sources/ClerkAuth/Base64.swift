/// Strict base64 / base64url codec: Foundation's decoder is lenient about padding and trailing bits,
/// and a secret or signature that only decodes leniently is a sign of corruption.
enum Base64 {
    enum Alphabet { case standard, url }
    enum Padding { case required, forbidden, optional }

    static func encode(_ bytes: [UInt8], alphabet: Alphabet = .standard) -> String {
        let table = alphabet == .standard ? standardTable : urlTable
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let n = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)], table[Int(n >> 6 & 63)], table[Int(n & 63)]]
            index += 3
        }
        let rest = bytes.count - index
        if rest > 0 {
            let n = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
            out += [table[Int(n >> 18 & 63)], table[Int(n >> 12 & 63)]]
            if rest == 2 { out.append(table[Int(n >> 6 & 63)]) }
            if alphabet == .standard { out += Array(repeating: UInt8(ascii: "="), count: 3 - rest) }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode<S: StringProtocol>(_ text: S, alphabet: Alphabet, padding: Padding) -> [UInt8]? {
        let chars = Array(text.utf8)
        var dataCount = chars.count
        while dataCount > 0, chars[dataCount - 1] == UInt8(ascii: "=") { dataCount -= 1 }
        let padCount = chars.count - dataCount
        let remainder = dataCount % 4
        guard remainder != 1 else { return nil }
        let expectedPad = (4 - remainder) % 4
        switch padding {
        case .required: guard padCount == expectedPad else { return nil }
        case .forbidden: guard padCount == 0 else { return nil }
        case .optional: guard padCount == 0 || padCount == expectedPad else { return nil }
        }
        let table = alphabet == .standard ? standardDecode : urlDecode
        var out: [UInt8] = []
        out.reserveCapacity(dataCount * 3 / 4)
        var accumulator: UInt32 = 0
        var bits = 0
        for char in chars[..<dataCount] {
            let value = table[Int(char)]
            guard value != 0xFF else { return nil }
            accumulator = accumulator << 6 | UInt32(value)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: accumulator >> UInt32(bits)))
                accumulator &= (1 << UInt32(bits)) - 1
            }
        }
        // Non-zero leftover bits mean a non-canonical encoding.
        guard accumulator == 0 else { return nil }
        return out
    }

    private static let standardTable = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let urlTable = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let standardDecode = reverse(standardTable)
    private static let urlDecode = reverse(urlTable)

    private static func reverse(_ table: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0xFF, count: 256)
        for (index, char) in table.enumerated() { result[Int(char)] = UInt8(index) }
        return result
    }
}
