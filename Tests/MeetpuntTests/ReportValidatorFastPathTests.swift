import Foundation
import Testing
@testable import TelemetryModel

/// The validator passes valid series through an allocation-free check and runs its ordered checks only
/// on the rest. The two must agree on every series: seeded random breakages of the golden reports give
/// the same verdict and the same first violation with the fast check on and off.
@Suite struct ReportValidatorFastPathTests {
    static func golden() throws -> [Report] {
        try ["report-v1.json", "report-v2.json", "report-v3.json"].map {
            try JSONDecoder().decode(Report.self, from: Data(contentsOf: TestSupport.fixtures.appendingPathComponent($0)))
        }
    }

    /// A sketch decoded from its wire form, so that buckets holding zero values can be made.
    static func sketch(alpha: Double, zero: UInt64, positive: [(Int32, UInt64)], negative: [(Int32, UInt64)]) throws -> QuantileSketch {
        var json = #"{"alpha":\#(alpha),"zero":\#(zero),"index":\#(positive.map(\.0)),"count":\#(positive.map(\.1))"#
        if !negative.isEmpty { json += #","neg_index":\#(negative.map(\.0)),"neg_count":\#(negative.map(\.1))"# }
        return try JSONDecoder().decode(QuantileSketch.self, from: Data((json + "}").utf8))
    }

    static func randomSketch(_ rng: inout SeededGenerator) throws -> QuantileSketch {
        func buckets() -> [(Int32, UInt64)] {
            let indices = Set((0..<Int.random(in: 0...5, using: &rng)).map { _ in Int32.random(in: -300...300, using: &rng) })
            return indices.map { ($0, [0, 1, 2, 7, 1000].randomElement(using: &rng)!) }
        }
        return try sketch(alpha: [0.01, 0.02, 0.1].randomElement(using: &rng)!, zero: [0, 0, 1, 3].randomElement(using: &rng)!,
                          positive: buckets(), negative: buckets())
    }

    @Test func extremesAreQuantileZeroAndOne() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["MEETPUNT_VALIDATOR_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("ReportValidatorFastPathTests extremes seed \(seed) (MEETPUNT_VALIDATOR_SEED replays it)")
        var rng = SeededGenerator(seed: seed)
        var compared = 0
        for _ in 0..<2000 {
            let s = try Self.randomSketch(&rng)
            let extremes = s.extremes
            #expect(extremes?.lowest == s.quantile(0) && extremes?.highest == s.quantile(1), "seed \(seed): \(s)")
            if extremes != nil { compared += 1 }
        }
        #expect(compared > 1000, "most random sketches hold values")
    }

    @Test func theFastCheckAgreesWithTheOrderedChecks() throws {
        let seed = UInt64(ProcessInfo.processInfo.environment["MEETPUNT_VALIDATOR_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64.max)
        print("ReportValidatorFastPathTests seed \(seed) (MEETPUNT_VALIDATOR_SEED replays it)")
        var rng = SeededGenerator(seed: seed)
        let fast = ReportValidator()
        var ordered = ReportValidator()
        ordered.checksValidSeriesFast = false
        let reports = try Self.golden()
        let numbers: [Double] = [.nan, .infinity, -.infinity, 1e19, -1e19, -1, 0, 1, 1e-300, 5e3, -5e3]
        let labelValues = ["00:11:22:33:44:55", "192.168.1.20", "wlan0", "eth0", "5", "2.4", "7", "",
                           String(repeating: "x", count: 65), "cm_4k2tqmf7zy3xabv5r6wdsgnh", "bs_4k2tqmf7zy3xabv5r6wdsgnh", "x86_pkg_temp"]
        var verdicts = [true: 0, false: 0]
        for round in 0..<3000 {
            var report = reports.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 0...2, using: &rng) {
                let i = Int.random(in: 0..<report.series.count, using: &rng)
                var s = report.series[i]
                switch Int.random(in: 0..<12, using: &rng) {
                case 0: if let key = s.labels.keys.randomElement(using: &rng) { s.labels[key] = labelValues.randomElement(using: &rng)! }
                case 1: s.labels[["extra", "interface", "band", "peer", "zone", "channel"].randomElement(using: &rng)!] = labelValues.randomElement(using: &rng)!
                case 2: if let key = s.labels.keys.randomElement(using: &rng) { s.labels[key] = nil }
                case 3: s.metric = [s.metric, "no.such.metric", "link.rx_bytes", "system.temperature"].randomElement(using: &rng)!
                case 4: s.unit = [s.unit, "bytes", "dBm", "celsius"].randomElement(using: &rng)!
                case 5: s.count = [0, -1, 1, s.count, 1_000_000_001].randomElement(using: &rng)!
                case 6: s.min = numbers.randomElement(using: &rng)!
                case 7: s.max = numbers.randomElement(using: &rng)!
                case 8: s.mean = numbers.randomElement(using: &rng)!
                case 9: s.last = numbers.randomElement(using: &rng)!
                case 10: s.sum = numbers.randomElement(using: &rng)!
                default:
                    let replacement = try Self.randomSketch(&rng)
                    s.sketch = Bool.random(using: &rng) ? replacement : nil
                    if Bool.random(using: &rng), let n = replacement.checkedCount, n > 0, n < 1_000_000 { s.count = Int(n) }
                }
                report.series[i] = s
            }
            if Int.random(in: 0..<5, using: &rng) == 0 { report.schema = 1 }
            let now = report.windowEndMs + 1000
            let a = fast.validate(report, nowMs: now), b = ordered.validate(report, nowMs: now)
            #expect(a == b, "seed \(seed), round \(round): fast \(a.map(String.init(describing:)) ?? "valid"), ordered \(b.map(String.init(describing:)) ?? "valid")")
            verdicts[a == nil, default: 0] += 1
        }
        // Both verdicts occur often enough for the comparison to mean something.
        #expect(verdicts[true]! > 300 && verdicts[false]! > 300, "valid \(verdicts[true]!), invalid \(verdicts[false]!)")
    }
}
