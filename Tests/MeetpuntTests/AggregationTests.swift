import Aggregation
import Testing
import TelemetryModel

@Suite struct CounterTrackerTests {
    typealias Reading = CounterTracker<String>.Reading

    @Test func deltasAreComputedBetweenReadings() {
        var t = CounterTracker<String>()
        #expect(t.update("eth0", Reading(generation: 2, counters: [100, 5], monotonicNanoseconds: 1_000_000_000)) == .baseline)
        #expect(t.update("eth0", Reading(generation: 2, counters: [1100, 5], monotonicNanoseconds: 3_000_000_000)) == .delta([1000, 0], seconds: 2))
    }

    @Test(arguments: [
        (Reading(generation: 2, counters: [50, 5], monotonicNanoseconds: 2_000_000_000), "counter went backwards"),
        (Reading(generation: 3, counters: [5000, 6], monotonicNanoseconds: 2_000_000_000), "ifindex changed"),
        (Reading(generation: 2, counters: [5000, 6], monotonicNanoseconds: 1_000_000_000), "time did not advance"),
    ])
    func resetsYieldNoDelta(next: Reading, why: String) {
        var t = CounterTracker<String>()
        _ = t.update("eth0", Reading(generation: 2, counters: [100, 5], monotonicNanoseconds: 1_000_000_000))
        #expect(t.update("eth0", next) == .reset, "\(why)")
        // After a reset the next interval is normal again.
        var after = next
        after.counters = next.counters.map { $0 + 10 }
        after.monotonicNanoseconds = next.monotonicNanoseconds + 1_000_000_000
        #expect(t.update("eth0", after) == .delta([10, 10], seconds: 1))
    }

    @Test func trackedKeysAreBounded() {
        var t = CounterTracker<String>(maxKeys: 2)
        for name in ["a", "b", "c"] {
            _ = t.update(name, Reading(generation: 1, counters: [1], monotonicNanoseconds: 1))
        }
        #expect(t.update("c", Reading(generation: 1, counters: [2], monotonicNanoseconds: 2)) == .baseline, "c was never tracked")
        #expect(t.update("a", Reading(generation: 1, counters: [2], monotonicNanoseconds: 2)) == .delta([1], seconds: 1e-9))
    }
}

@Suite struct WindowAggregatorTests {
    @Test func summarisesSamplesPerSeries() throws {
        var a = WindowAggregator(maxSeries: 10)
        let rate = try #require(MetricCatalog.descriptor(named: "link.rx_rate"))
        for v in [10.0, 20.0, 30.0, 40.0] { a.add(rate, labels: ["interface": "eth0"], value: v) }
        let (series, dropped) = a.drain()
        #expect(dropped == 0)
        let s = try #require(series.first)
        #expect(s.count == 4 && s.min == 10 && s.max == 40 && s.mean == 25 && s.last == 40 && s.sum == 100)
        #expect(s.unit == "bits_per_second")
        #expect(s.sketch?.count == 4)
        #expect(a.isEmpty)
    }

    @Test func seriesBeyondTheBoundAreDroppedAndCounted() throws {
        var a = WindowAggregator(maxSeries: 3)
        let d = try #require(MetricCatalog.descriptor(named: "link.mtu"))
        for i in 0..<5 { a.add(d, labels: ["interface": "eth\(i)"], value: 1500) }
        a.add(d, labels: ["interface": "eth0"], value: 1400)
        // A refused series counts once, however many samples it brings, one by one or as a run.
        for _ in 0..<3 { a.add(d, labels: ["interface": "eth4"], value: 1500) }
        a.add(d, labels: ["interface": "eth3"], values: [1500, 1500])
        let (series, dropped) = a.drain()
        #expect(series.count == 3)
        #expect(dropped == 2)
        #expect(series[0].count == 2)
        // The next window starts afresh: the same series refused again count again.
        for i in 0..<5 { a.add(d, labels: ["interface": "eth\(i)"], value: 1500) }
        #expect(a.drain().droppedSeries == 2)
    }
}
