import COpenSSL
import Foundation

/// PEM text <-> DER bytes through OpenSSL's PEM reader and writer.
enum PEM {
    /// Tolerates the one-line form of .env files: literal `\n`, surrounding quotes and whitespace.
    static func normalize(_ text: String) -> String {
        var pem = text.replacingOccurrences(of: "\\n", with: "\n")
        pem = String(Substring(pem).trimmingWhitespace())
        if pem.count >= 2, pem.first == "\"" || pem.first == "'", pem.last == pem.first {
            pem = String(pem.dropFirst().dropLast())
        }
        return pem + "\n"
    }

    /// The first PEM block's label ("PUBLIC KEY", ...) and DER bytes.
    static func decode(_ text: String) throws -> (label: String, der: [UInt8]) {
        let pem = Array(normalize(text).utf8)
        return try pem.withUnsafeBytes { buffer in
            // The memory BIO borrows `buffer`, so it must not outlive this closure.
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else {
                throw KeyError.openSSL("out of memory")
            }
            defer { BIO_free(bio) }
            var name: UnsafeMutablePointer<CChar>? = nil
            var header: UnsafeMutablePointer<CChar>? = nil
            var data: UnsafeMutablePointer<UInt8>? = nil
            var length = 0
            let status = PEM_read_bio(bio, &name, &header, &data, &length)
            defer {
                CRYPTO_free(name, #fileID, #line)
                CRYPTO_free(header, #fileID, #line)
                CRYPTO_free(data, #fileID, #line)
            }
            guard status == 1, let name, let data else { throw KeyError.openSSL("not a PEM block") }
            return (String(cString: name), Array(UnsafeBufferPointer(start: data, count: length)))
        }
    }

    /// Everything written to a memory BIO by `write`.
    static func write(_ write: (OpaquePointer) -> Int32) throws -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw KeyError.openSSL("out of memory") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw KeyError.openSSL("could not write PEM") }
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = BIO_read(bio, &chunk, Int32(chunk.count))
            if count <= 0 { break }
            output += chunk[..<Int(count)]
        }
        return String(decoding: output, as: UTF8.self)
    }
}
