/// Errors of the collector: configuration, storage and request handling.
public struct CollectorError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case configuration, storage, notFound, conflict, invalidArgument }
        private let value: Value
        private init(_ v: Value) { value = v }
        public static let configuration = Code(.configuration)
        public static let storage = Code(.storage)
        public static let notFound = Code(.notFound)
        public static let conflict = Code(.conflict)
        public static let invalidArgument = Code(.invalidArgument)
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String
    public let underlying: (any Error)?

    public init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String { message }
}
