import CMongoC
import CMongoShim
import Foundation

/// A BSON value as plain Swift, so that stores build and read documents without touching `bson_t`.
public indirect enum BSONValue: Equatable, Sendable {
    case double(Double)
    case string(String)
    case document(BSONDocument)
    case array([BSONValue])
    case bool(Bool)
    case date(Date)
    case null
    case int32(Int32)
    case int64(Int64)
    case objectID(String)
    /// Binary data with its subtype (4: a UUID, as in session ids).
    case binary(subtype: UInt8, bytes: [UInt8])
    case unsupported(UInt32)

    public var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    public var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var dateValue: Date? { if case .date(let d) = self { return d } else { return nil } }
    public var documentValue: BSONDocument? { if case .document(let d) = self { return d } else { return nil } }
    public var arrayValue: [BSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var int64Value: Int64? {
        switch self {
        case .int32(let v): return Int64(v)
        case .int64(let v): return v
        case .double(let v) where v == v.rounded(): return Int64(v)
        default: return nil
        }
    }
}

/// An ordered BSON document.
public struct BSONDocument: Equatable, Sendable, ExpressibleByDictionaryLiteral {
    public var fields: [(String, BSONValue)]

    public init(_ fields: [(String, BSONValue)] = []) { self.fields = fields }
    public init(dictionaryLiteral elements: (String, BSONValue)...) { fields = elements }

    public subscript(key: String) -> BSONValue? {
        get { fields.first { $0.0 == key }?.1 }
        set {
            if let i = fields.firstIndex(where: { $0.0 == key }) {
                if let newValue { fields[i].1 = newValue } else { fields.remove(at: i) }
            } else if let newValue {
                fields.append((key, newValue))
            }
        }
    }

    public static func == (a: BSONDocument, b: BSONDocument) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}

extension BSONValue {
    public static func string(_ value: String?) -> BSONValue { value.map { .string($0) } ?? .null }
    public static func date(millis: Int64) -> BSONValue { .date(Date(timeIntervalSince1970: Double(millis) / 1000)) }
}

// MARK: bson_t bridging (only this file and the collection adapter see libbson)

extension BSONDocument {
    /// Calls `body` with a temporary `bson_t *` holding this document.
    func withBSON<R>(_ body: (OpaquePointer) throws -> R) rethrows -> R {
        let bson = bson_new()!
        defer { bson_destroy(bson) }
        append(to: bson)
        return try body(bson)
    }

    func append(to bson: OpaquePointer) {
        for (key, value) in fields { Self.append(value, key: key, to: bson) }
    }

    static func append(_ value: BSONValue, key: String, to bson: OpaquePointer) {
        switch value {
        case .double(let d): bson_append_double(bson, key, -1, d)
        case .string(let s): bson_append_utf8(bson, key, -1, s, Int32(s.utf8.count))
        case .bool(let b): bson_append_bool(bson, key, -1, b)
        case .null, .unsupported: bson_append_null(bson, key, -1)
        case .int32(let i): bson_append_int32(bson, key, -1, i)
        case .int64(let i): bson_append_int64(bson, key, -1, i)
        case .date(let d): bson_append_date_time(bson, key, -1, Int64((d.timeIntervalSince1970 * 1000).rounded()))
        case .objectID(let hex): chat_bson_append_oid_hex(bson, key, hex)
        case .binary(let subtype, let bytes):
            bson_append_binary(bson, key, -1, bson_subtype_t(rawValue: UInt32(subtype)), bytes, UInt32(bytes.count))
        case .document(let doc):
            let child = chat_bson_begin_document(bson, key)!
            doc.append(to: child)
            chat_bson_end_document(bson, child)
        case .array(let items):
            let child = chat_bson_begin_array(bson, key)!
            for (i, item) in items.enumerated() { append(item, key: String(i), to: child) }
            chat_bson_end_array(bson, child)
        }
    }

    init(bson: OpaquePointer) {
        guard let iter = chat_bson_iter_new(bson) else { self.init(); return }
        defer { chat_bson_iter_free(iter) }
        self.init(Self.fields(iter))
    }

    private static func fields(_ iter: OpaquePointer) -> [(String, BSONValue)] {
        var fields: [(String, BSONValue)] = []
        while bson_iter_next(iter) {
            fields.append((String(cString: bson_iter_key(iter)), value(iter)))
        }
        return fields
    }

    private static func value(_ iter: OpaquePointer) -> BSONValue {
        let type = bson_iter_type(iter)
        switch type {
        case BSON_TYPE_DOUBLE: return .double(bson_iter_double(iter))
        case BSON_TYPE_UTF8:
            var length: UInt32 = 0
            let p = bson_iter_utf8(iter, &length)!
            return .string(String(decoding: UnsafeRawBufferPointer(start: p, count: Int(length)), as: UTF8.self))
        case BSON_TYPE_BOOL: return .bool(bson_iter_bool(iter))
        case BSON_TYPE_NULL, BSON_TYPE_UNDEFINED: return .null
        case BSON_TYPE_INT32: return .int32(bson_iter_int32(iter))
        case BSON_TYPE_INT64: return .int64(bson_iter_int64(iter))
        case BSON_TYPE_DATE_TIME: return .date(Date(timeIntervalSince1970: Double(bson_iter_date_time(iter)) / 1000))
        case BSON_TYPE_OID:
            var hex = [CChar](repeating: 0, count: 25)
            chat_bson_iter_oid_hex(iter, &hex)
            return .objectID(hex.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
        case BSON_TYPE_BINARY:
            var subtype = bson_subtype_t(rawValue: 0)
            var length: UInt32 = 0
            var p: UnsafePointer<UInt8>?
            bson_iter_binary(iter, &subtype, &length, &p)
            return .binary(subtype: UInt8(truncatingIfNeeded: subtype.rawValue),
                           bytes: p.map { Array(UnsafeBufferPointer(start: $0, count: Int(length))) } ?? [])
        case BSON_TYPE_DOCUMENT, BSON_TYPE_ARRAY:
            guard let child = chat_bson_iter_child(iter) else { return .null }
            defer { chat_bson_iter_free(child) }
            let fields = fields(child)
            return type == BSON_TYPE_ARRAY ? .array(fields.map(\.1)) : .document(BSONDocument(fields))
        default:
            return .unsupported(type.rawValue)
        }
    }
}

extension BSONValue: ExpressibleByDictionaryLiteral {
    /// `["$set": ["a": .int32(1)]]` reads as a nested document.
    public init(dictionaryLiteral elements: (String, BSONValue)...) { self = .document(BSONDocument(elements)) }
}
