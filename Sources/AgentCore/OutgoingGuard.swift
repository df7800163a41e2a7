import Logging
import TelemetryModel

/// The last check before a report is written anywhere (queue, spool, request): any series with a label that
/// looks like a MAC, an IP address or a configured SSID is dropped and counted. The log line names the
/// series' metric and label key, never the value.
public struct OutgoingGuard: Sendable {
    public let identifierGuard: IdentifierGuard

    public init(guardSSIDs: [String]) {
        identifierGuard = IdentifierGuard(ssids: guardSSIDs)
    }

    /// `series` without the offending ones, and how many were dropped.
    public func filter(_ series: [Series], logger: Logger) -> (kept: [Series], dropped: Int) {
        var kept: [Series] = []
        kept.reserveCapacity(series.count)
        var dropped = 0
        for s in series {
            if let (key, finding) = offendingLabel(s) {
                dropped += 1
                logger.warning("outgoing-data guard dropped a series", metadata: [
                    "series.metric": "\(s.metric)", "series.label": "\(key)", "guard.finding": "\(finding.rawValue)",
                ])
            } else {
                kept.append(s)
            }
        }
        return (kept, dropped)
    }

    func offendingLabel(_ s: Series) -> (String, IdentifierGuard.Finding)? {
        for (key, value) in s.labels.sorted(by: { $0.key < $1.key }) {
            if let f = identifierGuard.finding(in: value) { return (key, f) }
            if let f = identifierGuard.finding(in: key) { return (key.isEmpty ? "?" : "<label key>", f) }
        }
        if let f = identifierGuard.finding(in: s.metric) { return ("<metric name>", f) }
        return nil
    }
}
