import Foundation

/// Reads `.env` files as dotenv does: `KEY=value`, `export KEY=value`, `#` comments, single or double
/// quotes (double quotes understand `\n`), unquoted values end at ` #`.
public enum DotEnv {
    public static func parse(_ text: String) -> [String: String] {
        var result: [String: String] = [:]
        for rawLine in text.split(whereSeparator: \.isNewline) {
            var line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = String(line.dropFirst(7)).trimmingCharacters(in: .whitespaces) }
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces)
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, let first = value.first, first == "\"" || first == "'",
               let close = value.dropFirst().lastIndex(of: first) {
                let inner = String(value[value.index(after: value.startIndex)..<close])
                value = first == "\"" ? inner.replacingOccurrences(of: "\\n", with: "\n") : inner
            } else if let comment = value.range(of: " #") {
                value = value[..<comment.lowerBound].trimmingCharacters(in: .whitespaces)
            }
            if !key.isEmpty { result[key] = value }
        }
        return result
    }

    /// The settings a process reads: the environment over the `.env` file's text. An empty value is
    /// unset in either (`KEY=` in .env.example, `KEY= make run`).
    public static func settings(environment: [String: String], fileText: String?) -> [String: String] {
        var values = fileText.map(parse)?.filter { !$0.value.isEmpty } ?? [:]
        values.merge(environment.filter { !$0.value.isEmpty }) { _, fromEnvironment in fromEnvironment }
        return values
    }
}
