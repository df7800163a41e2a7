import Logging
import TelemetryModel

/// A log handler that passes every message and metadata value through the identifier guard before it
/// reaches the wrapped handler: no raw MAC, IP address or configured SSID is ever logged, at any level,
/// even when a library or an error message carries one.
public struct RedactingLogHandler: LogHandler {
    private var inner: any LogHandler
    private let identifierGuard: IdentifierGuard

    public init(wrapping inner: any LogHandler, guardSSIDs: [String]) {
        self.inner = inner
        self.identifierGuard = IdentifierGuard(ssids: guardSSIDs)
    }

    public var logLevel: Logger.Level {
        get { inner.logLevel }
        set { inner.logLevel = newValue }
    }

    public var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue.mapValues(redact) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue.map(redact) }
    }

    public func log(event: LogEvent) {
        var event = event
        event.message = "\(identifierGuard.redact(event.message.description))"
        event.metadata = event.metadata?.mapValues(redact)
        inner.log(event: event)
    }

    private func redact(_ value: Logger.Metadata.Value) -> Logger.Metadata.Value {
        switch value {
        case .string(let s): return .string(identifierGuard.redact(s))
        case .stringConvertible(let c): return .string(identifierGuard.redact(c.description))
        case .array(let a): return .array(a.map(redact))
        case .dictionary(let d): return .dictionary(d.mapValues(redact))
        }
    }
}
