/// Errors of the shared telemetry model: validation of reports and sketches.
public struct TelemetryModelError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String { case invalidSketch, invalidReport, identifierInOutput }
        private let value: Value
        private init(_ value: Value) { self.value = value }
        public static let invalidSketch = Code(.invalidSketch)
        public static let invalidReport = Code(.invalidReport)
        public static let identifierInOutput = Code(.identifierInOutput)
        public var description: String { value.rawValue }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
