/// Checks a decoded report against the protocol's rules: schema version, window bounds, metric names and
/// units, label keys and values, numeric sanity, and the identifier guard.
///
/// The collector runs it on every report before storing anything; the first violation is returned with a
/// path (`series[3].labels.client`) so the agent's operator can find it.
public struct ReportValidator: Sendable {
    public struct Limits: Sendable {
        public var maxSeries = 5000
        public var maxLabelsPerSeries = 8
        public var maxLabelValueBytes = 64
        /// Longest accepted window: one hour (the agent's maximum) plus a minute of scheduling slack.
        public var maxWindowMs: Int64 = 3_660_000
        /// How far in the future a window may end (device clock ahead of the collector).
        public var maxClockSkewMs: Int64 = 300_000
        /// Samples one series may summarise: an hour's window of per-packet RTTs stays far below it, and
        /// sums of counts over a fleet's reports stay far from overflowing.
        public var maxSamplesPerSeries = 1_000_000_000
        /// Largest magnitude of any value (bytes in an hour at 100 Gbit/s are 4.5e13): sums over a fleet's
        /// reports then stay finite.
        public var maxMagnitude = 1e18
        public init() {}
    }

    public struct Violation: Error, Sendable, Equatable, CustomStringConvertible {
        /// Where in the report: `schema`, `window_end_ms`, `series[2].labels.interface`…
        public let path: String
        public let message: String
        public var description: String { "\(path): \(message)" }
    }

    public var limits: Limits
    public var identifierGuard: IdentifierGuard
    /// Tests turn the allocation-free check of valid series off to compare it with the ordered checks.
    var checksValidSeriesFast = true

    public init(limits: Limits = Limits(), identifierGuard: IdentifierGuard = IdentifierGuard()) {
        self.limits = limits
        self.identifierGuard = identifierGuard
    }

    /// Checks a device id: 1–64 of A–Z a–z 0–9 - _ . and nothing that looks like an identifier.
    public func validateDeviceID(_ id: String) -> Violation? {
        let ok = (1...64).contains(id.utf8.count) && id.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
        }
        guard ok, id != ".", id != ".." else { return Violation(path: "device", message: "device id must be 1–64 of A–Z a–z 0–9 - _ ., and not . or ..") }
        if let found = identifierGuard.finding(in: id) {
            return Violation(path: "device", message: "device id looks like a raw \(found.rawValue); device ids must be pseudonymous")
        }
        return nil
    }

    /// Validates `report` as received at `nowMs` (collector clock).
    public func validate(_ report: Report, nowMs: Int64) -> Violation? {
        guard Report.supportedSchemaVersions.contains(report.schema) else {
            return Violation(path: "schema", message: "unknown schema version \(report.schema); this collector accepts \(Report.supportedSchemaVersions.lowerBound)...\(Report.supportedSchemaVersions.upperBound)")
        }
        if let v = validateDeviceID(report.device) { return v }
        if let session = report.troubleshootingSession {
            guard report.schema >= 3 else {
                return Violation(path: "troubleshooting_session", message: "troubleshooting_session needs schema 3; this report says schema \(report.schema)")
            }
            guard session >= 1 else { return Violation(path: "troubleshooting_session", message: "session ids start at 1") }
        }
        guard report.seq >= 1 else {
            return Violation(path: "seq", message: "sequence numbers start at 1; 0 is never sent by an agent")
        }
        guard report.seq <= UInt64(Int64.max) else {
            return Violation(path: "seq", message: "sequence number \(report.seq) exceeds \(Int64.max)")
        }
        // Bounds first, so no arithmetic below can overflow on hostile values.
        guard report.windowStartMs >= 0, report.windowEndMs <= nowMs + limits.maxClockSkewMs else {
            if report.windowStartMs < 0 {
                return Violation(path: "window_start_ms", message: "window start \(report.windowStartMs) is before 1970")
            }
            return Violation(path: "window_end_ms", message: "window ends \(report.windowEndMs - nowMs) ms in the future; clock skew of at most \(limits.maxClockSkewMs) ms is accepted (check the device's NTP)")
        }
        guard Self.isVersion(report.agentVersion) else {
            return Violation(path: "agent_version", message: "must be 1–32 of 0–9 A–Z a–z . + - (a version, not free text)")
        }
        guard report.windowEndMs > report.windowStartMs else {
            return Violation(path: "window_end_ms", message: "window end \(report.windowEndMs) is not after window start \(report.windowStartMs)")
        }
        guard report.windowEndMs - report.windowStartMs <= limits.maxWindowMs else {
            return Violation(path: "window_end_ms", message: "window is \(report.windowEndMs - report.windowStartMs) ms long; at most \(limits.maxWindowMs) ms allowed")
        }
        guard report.series.count <= limits.maxSeries else {
            return Violation(path: "series", message: "\(report.series.count) series; at most \(limits.maxSeries) per report")
        }
        if let found = identifierGuard.finding(in: report.agentVersion) {
            return Violation(path: "agent_version", message: "looks like a raw \(found.rawValue)")
        }
        for (i, series) in report.series.enumerated() where !(checksValidSeriesFast && isValid(series, schema: report.schema)) {
            // Only an invalid series pays for the checks in their documented order and for its path.
            if let v = validate(series, path: "series[\(i)]", schema: report.schema) { return v }
        }
        return nil
    }

    /// Whether `validate(_:path:schema:)` would find nothing, decided without allocating: labels in any
    /// order, the sketch's extremes in one pass. Most series are valid; the ordered checks (which name
    /// the first problem the same way every time) run only when this says no.
    private func isValid(_ s: Series, schema: Int) -> Bool {
        guard let d = MetricCatalog.descriptor(named: s.metric), s.unit == d.unit,
              s.labels.count <= limits.maxLabelsPerSeries, s.labels.count == d.labels.count else { return false }
        for (key, value) in s.labels {
            guard let rule = d.labels[key], value.utf8.count <= limits.maxLabelValueBytes,
                  identifierGuard.finding(in: value) == nil, Self.accepts(rule, value) else { return false }
        }
        guard s.count > 0, s.count <= limits.maxSamplesPerSeries else { return false }
        func outOfRange(_ x: Double) -> Bool { !x.isFinite || Swift.abs(x) > limits.maxMagnitude }
        if outOfRange(s.min) || outOfRange(s.max) || outOfRange(s.mean) || outOfRange(s.last) || outOfRange(s.sum) { return false }
        guard s.min <= s.max, s.mean >= s.min - 1e-9 * Swift.abs(s.min), s.mean <= s.max + 1e-9 * Swift.abs(s.max),
              s.last >= s.min, s.last <= s.max else { return false }
        if d.kind == .counterDelta, s.min < 0 || s.sum < 0 { return false }
        if let sketch = s.sketch {
            guard let count = sketch.checkedCount, count == UInt64(s.count) else { return false }
            if sketch.hasNegativeValues, schema < 2 { return false }
            if let (low, high) = sketch.extremes {
                let slack = 1 + sketch.relativeAccuracy * 2
                let lowest = s.min < 0 ? s.min * slack : s.min / slack
                let highest = s.max < 0 ? s.max / slack : s.max * slack
                if low < lowest - 1e-9 || high > highest + 1e-9 { return false }
            }
        }
        return true
    }

    private func validate(_ s: Series, path: String, schema: Int) -> Violation? {
        guard let d = MetricCatalog.descriptor(named: s.metric) else {
            return Violation(path: "\(path).metric", message: "unknown metric \"\(printable(s.metric))\"")
        }
        guard s.unit == d.unit else {
            return Violation(path: "\(path).unit", message: "metric \(d.name) has unit \(d.unit), not \"\(printable(s.unit))\"")
        }
        guard s.labels.count <= limits.maxLabelsPerSeries else {
            return Violation(path: "\(path).labels", message: "\(s.labels.count) labels; at most \(limits.maxLabelsPerSeries) allowed")
        }
        for key in s.labels.keys.sorted() where d.labels[key] == nil {
            return Violation(path: "\(path).labels.\(printable(key))", message: "label not defined for \(d.name); allowed: \(d.labels.keys.sorted().joined(separator: ", "))")
        }
        for (key, rule) in d.labels.sorted(by: { $0.key < $1.key }) {
            guard let value = s.labels[key] else {
                return Violation(path: "\(path).labels.\(key)", message: "required label missing")
            }
            guard value.utf8.count <= limits.maxLabelValueBytes else {
                return Violation(path: "\(path).labels.\(key)", message: "value longer than \(limits.maxLabelValueBytes) bytes")
            }
            if let found = identifierGuard.finding(in: value) {
                return Violation(path: "\(path).labels.\(key)", message: "value looks like a raw \(found.rawValue); identifiers must be pseudonymised on the device")
            }
            if !Self.accepts(rule, value) {
                return Violation(path: "\(path).labels.\(key)", message: "value \"\(printable(value))\" is not a valid \(Self.describe(rule))")
            }
        }
        guard s.count > 0 else { return Violation(path: "\(path).count", message: "count must be positive") }
        guard s.count <= limits.maxSamplesPerSeries else {
            return Violation(path: "\(path).count", message: "count \(s.count) is above \(limits.maxSamplesPerSeries) samples per series")
        }
        for (name, x) in zip(["min", "max", "mean", "last", "sum"], s.numbers) where !x.isFinite || Swift.abs(x) > limits.maxMagnitude {
            return Violation(path: "\(path).\(name)", message: x.isFinite ? "magnitude above \(limits.maxMagnitude)" : "value is not finite")
        }
        guard s.min <= s.max, s.mean >= s.min - 1e-9 * Swift.abs(s.min), s.mean <= s.max + 1e-9 * Swift.abs(s.max) else {
            return Violation(path: path, message: "min \(s.min), mean \(s.mean), max \(s.max) are inconsistent")
        }
        guard s.last >= s.min, s.last <= s.max else {
            return Violation(path: "\(path).last", message: "last \(s.last) lies outside [min \(s.min), max \(s.max)]")
        }
        if d.kind == .counterDelta, s.min < 0 || s.sum < 0 {
            return Violation(path: "\(path).\(s.sum < 0 ? "sum" : "min")",
                             message: "\(d.name) is a counter delta: its samples cannot be negative (min \(s.min), sum \(s.sum))")
        }
        if let sketch = s.sketch, let (low, high) = sketch.extremes {
            // Each bucket's representative is within α of every value in it: allow that much slack.
            let slack = 1 + sketch.relativeAccuracy * 2
            let lowest = s.min < 0 ? s.min * slack : s.min / slack
            let highest = s.max < 0 ? s.max / slack : s.max * slack
            if low < lowest - 1e-9 || high > highest + 1e-9 {
                return Violation(path: "\(path).sketch", message: "sketch values \(low)…\(high) fall outside [min \(s.min), max \(s.max)]")
            }
        }
        if let sketch = s.sketch, sketch.hasNegativeValues, schema < 2 {
            return Violation(path: "\(path).sketch", message: "negative sketch buckets need schema 2 or later")
        }
        if let sketch = s.sketch, sketch.checkedCount != UInt64(s.count) {
            return Violation(path: "\(path).sketch", message: "sketch holds \(sketch.checkedCount.map(String.init) ?? "more than 2^64") values but count is \(s.count)")
        }
        return nil
    }

    static func isVersion(_ v: String) -> Bool {
        (1...32).contains(v.utf8.count) && v.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "+") || b == UInt8(ascii: "-")
        }
    }

    /// Values echoed in error messages are shortened and stripped of control characters.
    private func printable(_ s: String) -> String {
        let cleaned = String(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }.map(Character.init))
        return cleaned.count > 40 ? String(cleaned.prefix(40)) + "…" : cleaned
    }

    static func accepts(_ rule: LabelValueRule, _ value: String) -> Bool {
        switch rule {
        case .interfaceName:
            return (1...15).contains(value.utf8.count) && value.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                    || b == UInt8(ascii: ".") || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: "@")
            }
        case .pseudonym(let tag):
            return isPseudonym(value, tag: tag)
        case .peer(let tags):
            return value == PeerLabel.others || tags.contains { isPseudonym(value, tag: $0) }
        case .integer(let range):
            guard (1...6).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  value == "0" || !value.hasPrefix("0"), let n = Int(value) else { return false }
            return range.contains(n)
        case .token:
            return (1...24).contains(value.utf8.count) && value.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                    || b == UInt8(ascii: ".") || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            }
        case .oneOf(let words):
            return words.contains(value)
        case .oui:
            let b = Array(value.utf8)
            guard b.count == 8, b[2] == UInt8(ascii: "-"), b[5] == UInt8(ascii: "-") else { return false }
            return [0, 1, 3, 4, 6, 7].allSatisfy { (b[$0] >= 0x30 && b[$0] <= 0x39) || (b[$0] >= 0x41 && b[$0] <= 0x46) }
        }
    }

    static func isPseudonym(_ value: String, tag: String) -> Bool {
        let prefix = tag + "_"
        guard value.hasPrefix(prefix) else { return false }
        let body = value.utf8.dropFirst(prefix.utf8.count)
        return body.count == 24 && body.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x32 && $0 <= 0x37) }
    }

    static func describe(_ rule: LabelValueRule) -> String {
        switch rule {
        case .interfaceName: return "interface name (1–15 of A–Z a–z 0–9 . - _ @)"
        case .pseudonym(let tag): return "pseudonym (\(tag)_ followed by 24 base32 characters)"
        case .oneOf(let words): return "value (one of \(words.joined(separator: ", ")))"
        case .oui: return "OUI (AA-BB-CC, upper-case hex)"
        case .peer(let tags): return "peer (\(tags.map { "\($0)_…" }.joined(separator: " or ")) pseudonym, or \(PeerLabel.others))"
        case .integer(let r): return "integer in \(r.lowerBound)...\(r.upperBound)"
        case .token: return "token (1–24 of A–Z a–z 0–9 . - _)"
        }
    }
}
