import Foundation
import TelemetryModel

/// Maximum age per data class. No class may exceed 24 months (730 days): traffic data is never kept
/// longer, and the collector refuses to start with a policy that says otherwise.
public struct RetentionPolicy: Sendable, Equatable {
    public static let absoluteMaximumDays = 730
    public static let millisecondsPerDay: Int64 = 86_400_000

    public private(set) var maxAgeDays: [DataClass: Int]

    public init(maxAgeDays: [DataClass: Int]) throws(CollectorError) {
        for c in DataClass.required where maxAgeDays[c] == nil {
            throw CollectorError(.configuration, "retention policy: data class \(c) has no max_age_days; every class needs one")
        }
        for (c, days) in maxAgeDays where days > Self.absoluteMaximumDays || days < 1 {
            throw CollectorError(.configuration, "retention policy: \(c) max_age_days \(days) is outside 1...\(Self.absoluteMaximumDays) (24 months is the legal maximum for any data)")
        }
        self.maxAgeDays = maxAgeDays
    }

    /// The defaults shipped in collector/retention.yaml.
    public static let defaults = try! RetentionPolicy(maxAgeDays: [
        .link: 395, .clients: 90, .wifi: 90, .traffic: 180, .troubleshooting: 30, .audit: 730, .fleet: 395,
    ])

    /// Oldest window end still retained for `dataClass` at `nowMs`; anything ending before it is expired.
    public func cutoffMs(_ dataClass: DataClass, nowMs: Int64) -> Int64 {
        nowMs - Int64(maxAgeDays[dataClass] ?? Self.absoluteMaximumDays) * Self.millisecondsPerDay
    }

    public func cutoffs(nowMs: Int64) -> [DataClass: Int64] {
        Dictionary(uniqueKeysWithValues: maxAgeDays.keys.map { ($0, cutoffMs($0, nowMs: nowMs)) })
    }

    public static func load(path: String) throws(CollectorError) -> RetentionPolicy {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw CollectorError(.configuration, "\(path): cannot read retention policy: \(error.localizedDescription)")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws(CollectorError) -> RetentionPolicy {
        var top = try YAMLMappingReader(YAMLMappingReader.load(file: file, text: text), file: file)
        var classes = try top.mapping("classes")
        var days: [DataClass: Int] = [:]
        for name in classes.keys {
            guard DataClass.required.contains(DataClass(rawValue: name)) else {
                throw YAMLMappingReader.error(file, classes.lineOf(name), "classes.\(name)",
                                              "unknown data class; valid: \(DataClass.required.map(\.rawValue).joined(separator: ", "))")
            }
            var entry = try classes.mapping(name)
            let n = try entry.int("max_age_days", range: 1...Int.max)
            if n > absoluteMaximumDays {
                throw YAMLMappingReader.error(file, entry.lineOf("max_age_days"), "classes.\(name).max_age_days",
                                              "\(n) days exceeds the 24-month maximum (\(absoluteMaximumDays) days); the collector will not start with it")
            }
            _ = try entry.string("description", default: "")
            try entry.finish()
            days[DataClass(rawValue: name)] = n
        }
        try classes.finish()
        try top.finish()
        for c in DataClass.required where days[c] == nil {
            throw YAMLMappingReader.error(file, classes.line, "classes.\(c)", "missing; every data class needs a max_age_days")
        }
        return try RetentionPolicy(maxAgeDays: days)
    }
}
