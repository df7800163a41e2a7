import CYAML

/// A YAML node with the position it came from, parsed by libyaml (kept out of Yams so the agent stays
/// free of full Foundation). Only what configuration needs: scalars, mappings, sequences.
public struct YAMLNode: Sendable {
    public indirect enum Value: Sendable {
        case scalar(String, plain: Bool)
        case mapping([(key: YAMLNode, value: YAMLNode)])
        case sequence([YAMLNode])
    }

    public let value: Value
    /// 1-based line and column.
    public let line: Int
    public let column: Int

    public var kindName: String {
        switch value {
        case .scalar: return "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }
}

public enum YAMLDocument {
    /// Parses `text`; an empty document is an empty mapping. Bounded: at most `maxNodes` nodes.
    public static func parse(_ text: String, file: String, maxNodes: Int = 10_000) throws(ConfigError) -> YAMLNode {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw ConfigError(file: file, line: nil, key: nil, message: "libyaml could not initialise")
        }
        defer { yaml_parser_delete(&parser) }
        var bytes = Array(text.utf8)
        var document = yaml_document_t()
        let loaded = bytes.withUnsafeMutableBufferPointer { buffer -> Int32 in
            yaml_parser_set_input_string(&parser, buffer.baseAddress, buffer.count)
            return yaml_parser_load(&parser, &document)
        }
        guard loaded == 1 else {
            let problem = parser.problem.map { String(cString: $0) } ?? "syntax error"
            let context = parser.context.map { " " + String(cString: $0) } ?? ""
            throw ConfigError(file: file, line: Int(parser.problem_mark.line) + 1, key: nil,
                              message: "invalid YAML: \(problem)\(context)")
        }
        defer { yaml_document_delete(&document) }
        guard let root = yaml_document_get_root_node(&document) else {
            return YAMLNode(value: .mapping([]), line: 1, column: 1)
        }
        var budget = maxNodes
        return try convert(root, in: &document, file: file, depth: 0, budget: &budget)
    }

    private static func convert(_ node: UnsafeMutablePointer<yaml_node_t>, in document: inout yaml_document_t, file: String,
                                depth: Int, budget: inout Int) throws(ConfigError) -> YAMLNode {
        let line = Int(node.pointee.start_mark.line) + 1
        let column = Int(node.pointee.start_mark.column) + 1
        budget -= 1
        guard budget >= 0, depth < 32 else {
            throw ConfigError(file: file, line: line, key: nil, message: "document too large or too deeply nested")
        }
        switch node.pointee.type {
        case YAML_SCALAR_NODE:
            let s = node.pointee.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            return YAMLNode(value: .scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE), line: line, column: column)
        case YAML_MAPPING_NODE:
            var pairs: [(key: YAMLNode, value: YAMLNode)] = []
            var pair = node.pointee.data.mapping.pairs.start
            while let p = pair, p != node.pointee.data.mapping.pairs.top {
                guard let k = yaml_document_get_node(&document, p.pointee.key),
                      let v = yaml_document_get_node(&document, p.pointee.value) else { break }
                pairs.append((try convert(k, in: &document, file: file, depth: depth + 1, budget: &budget),
                              try convert(v, in: &document, file: file, depth: depth + 1, budget: &budget)))
                pair = p + 1
            }
            return YAMLNode(value: .mapping(pairs), line: line, column: column)
        case YAML_SEQUENCE_NODE:
            var items: [YAMLNode] = []
            var item = node.pointee.data.sequence.items.start
            while let i = item, i != node.pointee.data.sequence.items.top {
                guard let n = yaml_document_get_node(&document, i.pointee) else { break }
                items.append(try convert(n, in: &document, file: file, depth: depth + 1, budget: &budget))
                item = i + 1
            }
            return YAMLNode(value: .sequence(items), line: line, column: column)
        default:
            return YAMLNode(value: .scalar("", plain: true), line: line, column: column)
        }
    }
}

/// A configuration problem, always with the file and, where known, the line and the key.
public struct ConfigError: Error, Sendable, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    /// Dotted path of the key, e.g. `sampling.interval_seconds`.
    public let key: String?
    public let message: String

    public init(file: String, line: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    public var description: String {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let key { return "\(where_): \(key): \(message)" }
        return "\(where_): \(message)"
    }
}
