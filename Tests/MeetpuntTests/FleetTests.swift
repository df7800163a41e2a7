import CollectorCore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import Testing
import TelemetryModel

/// Fleet aggregates merged at ingest: a fleet percentile comes from a few merged rows and equals the
/// percentile of the pooled raw values within the sketch's relative error.
@Suite struct FleetTests {
    struct Answer: Decodable {
        struct Cohort: Decodable {
            let cohort: String
            let reports: Int
            let count: Int
            let quantiles: [String: Double]
        }
        let cohorts: [Cohort]
        let withheld_cohorts: Int
    }

    static func signalReport(device: String, seq: UInt64, endMs: Int64, band: String, values: [Double]) -> Report {
        var sketch = QuantileSketch()
        for v in values { sketch.add(v) }
        let s = Series(metric: "wifi.station.signal_dbm", unit: "dbm", labels: ["interface": "wlan0", "band": band, "peer": "others"],
                       count: values.count, min: values.min()!, max: values.max()!, mean: values.reduce(0, +) / Double(values.count),
                       last: values.last!, sum: values.reduce(0, +), sketch: sketch)
        return Report(device: device, seq: seq, windowStartMs: endMs - 300_000, windowEndMs: endMs, keyEpoch: 683, agentVersion: "test", series: [s])
    }

    /// Acceptance 5: a million simulated devices (six values each, 6 M raw values) merged at ingest by two
    /// collector processes' aggregators, working at once, into one store; the answer reads a handful of rows
    /// and equals the percentile of the pooled raw values within the sketch's 1 % relative error. The
    /// pooled percentiles are exact: the values are whole dBm, so a count per value replaces a sort.
    /// `MEETPUNT_FLEET_DEVICES` sets another size (seed printed; the values replay from it).
    @Test func aFleetPercentileEqualsThePooledPercentileWithinTheSketchError() async throws {
        let f = try await CollectorFixture(devices: [])
        let end = f.now - 60_000
        let devices = max(2, ProcessInfo.processInfo.environment["MEETPUNT_FLEET_DEVICES"].flatMap(Int.init) ?? 1_000_000)
        let seed: UInt64 = 20_261_201
        print("fleet percentile test: \(devices) simulated devices, seed \(seed)")
        let second = FleetAggregator()  // a second collector process, flushing into the same database
        let merging = ContinuousClock.now
        // Each half of the fleet goes to one aggregator, both at once; each counts its raw values per dBm.
        let histograms = try await withThrowingTaskGroup(of: [Int: Int].self) { group in
            for (part, aggregator) in [f.api.fleet, second].enumerated() {
                group.addTask {
                    var rng = SeededGenerator(seed: seed &+ UInt64(part))
                    var counts: [Int: Int] = [:]
                    for d in stride(from: part, to: devices, by: 2) {
                        // Each household has its own typical signal; stations vary around it.
                        let base = Double(Int.random(in: -85 ... -35, using: &rng))
                        let values = (0..<6).map { _ in (base + Double.random(in: -6...6, using: &rng)).rounded() }
                        for v in values { counts[Int(v), default: 0] += 1 }
                        await aggregator.add(Self.signalReport(device: "sim-\(d)", seq: 1, endMs: end, band: "5", values: values))
                    }
                    return counts
                }
            }
            return try await group.reduce(into: [Int: Int]()) { all, part in all.merge(part, uniquingKeysWith: +) }
        }
        print("fleet percentile test: \(devices) devices' reports merged at ingest in \(ContinuousClock.now - merging)")
        // A cohort with too few reports to be a fleet figure.
        for d in 0..<3 { await f.api.fleet.add(Self.signalReport(device: "few-\(d)", seq: 1, endMs: end, band: "6", values: [-50])) }
        let logger = Logger(label: "test.fleet")
        #expect(await FleetFlushService(aggregator: f.api.fleet, store: f.store, logger: logger).flushOnce())
        #expect(await FleetFlushService(aggregator: second, store: f.store, logger: logger).flushOnce())

        let total = histograms.values.reduce(0, +)
        /// The value at rank ⌈q·n⌉ of the pooled values.
        @Sendable func pooled(_ q: Double) -> Double {
            let rank = Int((q * Double(total)).rounded(.up))
            var seen = 0
            for v in histograms.keys.sorted() {
                seen += histograms[v]!
                if seen >= rank { return Double(v) }
            }
            return Double(histograms.keys.max()!)
        }
        try await f.app().test(.live) { client in
            let started = ContinuousClock.now
            let r = try await client.execute(uri: "/v1/fleet?metric=wifi.station.signal_dbm&bucket=300&from=\(end - 600_000)&to=\(end + 1)&q=0.05,0.5,0.9,0.99",
                                             method: .get, headers: CollectorFixture.headers(f.operatorToken))
            let took = ContinuousClock.now - started
            #expect(r.status == .ok)
            let answer = try JSONDecoder().decode(Answer.self, from: Data(buffer: r.body))
            #expect(answer.withheld_cohorts == 1, "the 3-report cohort is withheld")
            let cohort = try #require(answer.cohorts.first { $0.cohort == "band=5" })
            #expect(cohort.reports == devices && cohort.count == total)
            for (key, q) in [("0.05", 0.05), ("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99)] {
                let exact = pooled(q)
                let got = try #require(cohort.quantiles[key])
                #expect(abs(got - exact) <= 0.01 * abs(exact) + 1e-9, "p\(key): fleet \(got), pooled \(exact)")
            }
            print("fleet percentile over \(devices) devices (\(total) values) answered in \(took) from merged rows: "
                  + cohort.quantiles.sorted { $0.key < $1.key }.map { "p\($0.key) \($0.value) (pooled \(pooled(Double($0.key)!)))" }.joined(separator: ", "))
            let unauthenticated = try await client.execute(uri: "/v1/fleet?metric=wifi.station.signal_dbm", method: .get)
            #expect(unauthenticated.status == .unauthorized)
        }
    }

    @Test func reportsStoredThroughTheAPIReachTheAggregatesOnceEvenWhenSentTwice() async throws {
        let f = try await CollectorFixture(devices: ["dev-a"])
        let reports = (1...12).map { Self.signalReport(device: "dev-a", seq: UInt64($0), endMs: f.now - Int64(13 - $0) * 1000, band: "2.4", values: [-60, -61]) }
        try await f.app().test(.live) { client in
            for _ in 0..<2 {
                let r = try await client.execute(uri: "/v1/report-batches", method: .post, headers: CollectorFixture.headers(f.deviceTokens["dev-a"], gzip: true),
                                                 body: try BatchIngestTests.batch(reports))
                #expect(r.status == .ok)
            }
            #expect(await FleetFlushService(aggregator: f.api.fleet, store: f.store, logger: Logger(label: "t")).flushOnce())
            let r = try await client.execute(uri: "/v1/fleet?metric=wifi.station.signal_dbm&bucket=3600&from=\(f.now - 7_200_000)",
                                             method: .get, headers: CollectorFixture.headers(f.operatorToken))
            let answer = try JSONDecoder().decode(Answer.self, from: Data(buffer: r.body))
            let total = answer.cohorts.reduce(0) { $0 + $1.count }
            #expect(total == 24, "12 reports of 2 values, the resent batch not counted again: \(answer.cohorts.map(\.count))")
        }
    }
}

/// A small deterministic generator (xorshift) so a failing run can be replayed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}
