import Yams

/// Reads one Yams mapping against a schema, like the agent's libyaml reader: typed getters with ranges,
/// and ``finish()`` rejecting unknown keys. Errors name the file, line and dotted key.
struct YAMLMappingReader {
    let file: String
    let path: String
    let line: Int
    private let pairs: [(key: String, node: Node, line: Int)]
    private var asked: [String] = []

    init(_ node: Node?, file: String, path: String = "", line: Int = 1) throws(CollectorError) {
        self.file = file
        self.path = path
        self.line = node?.mark?.line ?? line
        guard let node else {
            pairs = []
            return
        }
        guard let mapping = node.mapping else {
            throw Self.error(file, node.mark?.line, path, "expected a mapping (key: value lines)")
        }
        var result: [(String, Node, Int)] = []
        for (k, v) in mapping {
            guard let key = k.string else { throw Self.error(file, k.mark?.line, path, "keys must be plain words") }
            guard !result.contains(where: { $0.0 == key }) else {
                throw Self.error(file, k.mark?.line, Self.join(path, key), "key appears twice")
            }
            result.append((key, v, k.mark?.line ?? self.line))
        }
        pairs = result
    }

    static func join(_ path: String, _ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    static func error(_ file: String, _ line: Int?, _ key: String, _ message: String) -> CollectorError {
        var location = file
        if let line { location += ":\(line)" }
        return CollectorError(.configuration, key.isEmpty ? "\(location): \(message)" : "\(location): \(key): \(message)")
    }

    private mutating func node(_ key: String) -> Node? {
        asked.append(key)
        return pairs.first { $0.key == key }?.node
    }

    /// The line of `key`'s value, or of the mapping when absent.
    func lineOf(_ key: String) -> Int { pairs.first { $0.key == key }?.node.mark?.line ?? line }

    var keys: [String] { pairs.map(\.key) }

    mutating func string(_ key: String, default value: String? = nil, allowed: [String]? = nil) throws(CollectorError) -> String {
        guard let node = node(key) else {
            if let value { return value }
            throw Self.error(file, line, Self.join(path, key), "required key is missing")
        }
        guard let s = node.scalar?.string else {
            throw Self.error(file, node.mark?.line, Self.join(path, key), "expected a string")
        }
        if let allowed, !allowed.contains(s) {
            throw Self.error(file, node.mark?.line, Self.join(path, key), "\"\(s)\" is not valid; use one of: \(allowed.joined(separator: ", "))")
        }
        return s
    }

    mutating func int(_ key: String, default value: Int? = nil, range: ClosedRange<Int>) throws(CollectorError) -> Int {
        guard let node = node(key) else {
            if let value { return value }
            throw Self.error(file, line, Self.join(path, key), "required key is missing; valid: \(range.lowerBound)...\(range.upperBound)")
        }
        guard let scalar = node.scalar, scalar.style == .plain, let n = Int(scalar.string) else {
            throw Self.error(file, node.mark?.line, Self.join(path, key),
                             "expected an integer in \(range.lowerBound)...\(range.upperBound), found \"\(node.scalar?.string ?? "a collection")\"")
        }
        guard range.contains(n) else {
            throw Self.error(file, node.mark?.line, Self.join(path, key), "\(n) is out of range; valid: \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }

    mutating func stringList(_ key: String, default value: [String]) throws(CollectorError) -> [String] {
        guard let node = node(key) else { return value }
        guard let seq = node.sequence else {
            throw Self.error(file, node.mark?.line, Self.join(path, key), "expected a list")
        }
        var out: [String] = []
        for item in seq {
            guard let s = item.scalar?.string else { throw Self.error(file, item.mark?.line, Self.join(path, key), "list entries must be strings") }
            out.append(s)
        }
        return out
    }

    mutating func mapping(_ key: String) throws(CollectorError) -> YAMLMappingReader {
        let n = node(key)
        return try YAMLMappingReader(n, file: file, path: Self.join(path, key), line: line)
    }

    func finish() throws(CollectorError) {
        for (key, _, keyLine) in pairs where !asked.contains(key) {
            throw Self.error(file, keyLine, Self.join(path, key), "unknown key; valid keys here: \(asked.joined(separator: ", "))")
        }
    }

    static func load(file: String, text: String) throws(CollectorError) -> Node? {
        do { return try Yams.compose(yaml: text) } catch {
            throw CollectorError(.configuration, "\(file): invalid YAML: \(error)")
        }
    }
}
