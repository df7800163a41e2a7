#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads one YAML mapping against a schema: typed getters with ranges and defaults, and ``finish()`` to
/// reject keys nobody asked for. Every error names the file, line and dotted key.
public struct MappingReader {
    let file: String
    let path: String
    let line: Int
    private let pairs: [(key: String, node: YAMLNode, keyLine: Int)]
    private var asked: [String] = []

    public init(_ node: YAMLNode, file: String, path: String = "") throws(ConfigError) {
        self.file = file
        self.path = path
        self.line = node.line
        guard case .mapping(let raw) = node.value else {
            throw ConfigError(file: file, line: node.line, key: path.isEmpty ? nil : path,
                              message: "expected a mapping (key: value lines), found \(node.kindName)")
        }
        var seen = Set<String>()
        var pairs: [(key: String, node: YAMLNode, keyLine: Int)] = []
        for (k, v) in raw {
            guard case .scalar(let name, _) = k.value else {
                throw ConfigError(file: file, line: k.line, key: path.isEmpty ? nil : path, message: "keys must be plain words")
            }
            guard seen.insert(name).inserted else {
                throw ConfigError(file: file, line: k.line, key: Self.join(path, name), message: "key appears twice")
            }
            pairs.append((name, v, k.line))
        }
        self.pairs = pairs
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The keys present, in file order.
    public var keys: [String] { pairs.map(\.key) }

    /// The line of `key`'s value, or of this mapping when the key is absent.
    public func lineOf(_ key: String) -> Int { pairs.first { $0.key == key }?.node.line ?? line }

    private mutating func node(_ key: String) -> YAMLNode? {
        asked.append(key)
        return pairs.first { $0.key == key }?.node
    }

    private func error(_ key: String, _ node: YAMLNode, _ message: String) -> ConfigError {
        ConfigError(file: file, line: node.line, key: Self.join(path, key), message: message)
    }

    private func scalar(_ key: String, _ node: YAMLNode, expected: String) throws(ConfigError) -> (String, Bool) {
        guard case .scalar(let text, let plain) = node.value else {
            throw error(key, node, "expected \(expected), found \(node.kindName)")
        }
        return (text, plain)
    }

    public mutating func string(_ key: String, default value: String? = nil, allowed: [String]? = nil) throws(ConfigError) -> String {
        guard let node = node(key) else {
            if let value { return value }
            throw ConfigError(file: file, line: line, key: Self.join(path, key), message: "required key is missing")
        }
        let (text, _) = try scalar(key, node, expected: "a string")
        if let allowed, !allowed.contains(text) {
            throw error(key, node, "\"\(text)\" is not valid; use one of: \(allowed.joined(separator: ", "))")
        }
        return text
    }

    public mutating func optionalString(_ key: String) throws(ConfigError) -> String? {
        guard let node = node(key) else { return nil }
        let (text, plain) = try scalar(key, node, expected: "a string")
        if plain, text == "null" || text == "~" || text.isEmpty { return nil }
        return text
    }

    public mutating func int(_ key: String, default value: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let node = node(key) else { return value }
        let (text, plain) = try scalar(key, node, expected: "an integer")
        guard plain, let n = Int(text) else {
            throw error(key, node, "expected an integer in \(range.lowerBound)...\(range.upperBound), found \"\(text)\"")
        }
        guard range.contains(n) else {
            throw error(key, node, "\(n) is out of range; valid: \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    public mutating func bool(_ key: String, default value: Bool) throws(ConfigError) -> Bool {
        guard let node = node(key) else { return value }
        let (text, plain) = try scalar(key, node, expected: "true or false")
        guard plain else { throw error(key, node, "expected true or false, found the string \"\(text)\"") }
        switch text {
        case "true": return true
        case "false": return false
        default: throw error(key, node, "expected true or false, found \"\(text)\"")
        }
    }

    public mutating func stringList(_ key: String, default value: [String], maxCount: Int = 256) throws(ConfigError) -> [String] {
        guard let node = node(key) else { return value }
        guard case .sequence(let items) = node.value else {
            throw error(key, node, "expected a list (e.g. [\"eth0\", \"wan*\"]), found \(node.kindName)")
        }
        guard items.count <= maxCount else { throw error(key, node, "at most \(maxCount) entries allowed") }
        var out: [String] = []
        for item in items {
            guard case .scalar(let text, _) = item.value, !text.isEmpty else {
                throw ConfigError(file: file, line: item.line, key: Self.join(path, key), message: "list entries must be non-empty strings")
            }
            out.append(text)
        }
        return out
    }

    /// The nested mapping under `key`, or an empty one when absent.
    public mutating func mapping(_ key: String) throws(ConfigError) -> MappingReader {
        guard let node = node(key) else {
            return try MappingReader(YAMLNode(value: .mapping([]), line: line, column: 1), file: file, path: Self.join(path, key))
        }
        return try MappingReader(node, file: file, path: Self.join(path, key))
    }

    /// Rejects keys that were never asked for, naming the valid ones.
    public func finish() throws(ConfigError) {
        for (key, _, keyLine) in pairs where !asked.contains(key) {
            throw ConfigError(file: file, line: keyLine, key: Self.join(path, key),
                              message: "unknown key; valid keys here: \(asked.joined(separator: ", "))")
        }
    }
}

/// Shell-style glob match (`eth*`, `wlan[01]`), as fnmatch(3).
public func globMatches(_ pattern: String, _ name: String) -> Bool {
    fnmatch(pattern, name, 0) == 0
}
