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

    /// Acceptance 5, scaled to this machine: 20,000 simulated devices (120,000 raw values) merged by two
    /// collector processes' aggregators into one store; the answer reads a handful of rows.
    @Test func aFleetPercentileEqualsThePooledPercentileWithinTheSketchError() async throws {
        let f = try await CollectorFixture(devices: [])
        let end = f.now - 60_000
        var rng = SeededGenerator(seed: 20_261_201)
        var pooled: [Double] = []
        let second = FleetAggregator()  // a second collector process, flushing into the same database
        for d in 0..<20_000 {
            // Each household has its own typical signal; stations vary around it.
            let base = Double(Int.random(in: -85 ... -35, using: &rng))
            let values = (0..<6).map { _ in (base + Double.random(in: -6...6, using: &rng)).rounded() }
            pooled += values
            let r = Self.signalReport(device: "sim-\(d)", seq: 1, endMs: end, band: "5", values: values)
            await (d % 2 == 0 ? f.api.fleet : second).add(r)
        }
        // A cohort with too few reports to be a fleet figure.
        for d in 0..<3 { await f.api.fleet.add(Self.signalReport(device: "few-\(d)", seq: 1, endMs: end, band: "6", values: [-50])) }
        let logger = Logger(label: "test.fleet")
        #expect(await FleetFlushService(aggregator: f.api.fleet, store: f.store, logger: logger).flushOnce())
        #expect(await FleetFlushService(aggregator: second, store: f.store, logger: logger).flushOnce())

        let sorted = pooled.sorted()
        try await f.app().test(.live) { client in
            let started = ContinuousClock.now
            let r = try await client.execute(uri: "/v1/fleet?metric=wifi.station.signal_dbm&bucket=300&from=\(end - 600_000)&to=\(end + 1)&q=0.05,0.5,0.9,0.99",
                                             method: .get, headers: CollectorFixture.headers(f.operatorToken))
            let took = ContinuousClock.now - started
            #expect(r.status == .ok)
            let answer = try JSONDecoder().decode(Answer.self, from: Data(buffer: r.body))
            #expect(answer.withheld_cohorts == 1, "the 3-report cohort is withheld")
            let cohort = try #require(answer.cohorts.first { $0.cohort == "band=5" })
            #expect(cohort.reports == 20_000 && cohort.count == sorted.count)
            for (key, q) in [("0.05", 0.05), ("0.5", 0.5), ("0.9", 0.9), ("0.99", 0.99)] {
                let exact = sorted[Int((q * Double(sorted.count)).rounded(.up)) - 1]
                let got = try #require(cohort.quantiles[key])
                #expect(abs(got - exact) <= 0.01 * abs(exact) + 1e-9, "p\(key): fleet \(got), pooled \(exact)")
            }
            print("fleet percentile over 20,000 devices (120,000 values) answered in \(took) from merged rows")
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
