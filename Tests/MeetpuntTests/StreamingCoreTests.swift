@testable import AgentCore
import Foundation
import Pseudonymisation
import Testing
import TelemetryModel

/// The streaming core: windows driven by the samples' own timestamps (the same type for the live agent
/// and `analyze`), and the one bounded path every sense pushes into.
@Suite struct StreamingCoreTests {
    static func batch(_ value: Double) -> SampleBatch {
        var b = SampleBatch()
        b.add("link.rx_bytes", ["interface": "eth0"], value)
        return b
    }

    @Test func windowsCloseByTheSamplesTimestampsNotByAClock() {
        var w = WindowedAggregation(windowMicroseconds: 10_000_000, maxSeries: 100)
        var closed: [WindowedAggregation.Window] = []
        // A file's timestamps: 1 s apart, then a 35 s gap (empty windows are not emitted), then a sample
        // from before the open window (a clock step back) that is folded into it.
        for t in 0..<12 { closed += w.add(Self.batch(1), at: 1_000_000_000 + Int64(t) * 1_000_000, epoch: 7) }
        #expect(closed.count == 1)
        #expect(closed[0].startMicroseconds == 1_000_000_000 && closed[0].endMicroseconds == 1_010_000_000)
        #expect(closed[0].series.first?.sum == 10)
        closed = w.add(Self.batch(5), at: 1_046_000_000, epoch: 7)
        #expect(closed.count == 1 && closed[0].series.first?.sum == 2, "the window of samples 10 and 11")
        #expect(w.add(Self.batch(3), at: 1_041_000_000, epoch: 7).isEmpty, "a step back is folded, never a negative window")
        let last = w.finish()
        #expect(last.count == 1 && last[0].series.first?.sum == 8)
        #expect(last[0].startMicroseconds == 1_040_000_000, "windows stay aligned to the first one")
    }

    @Test func aKeyEpochChangeClosesTheWindowSoNoReportMixesEpochs() {
        var w = WindowedAggregation(windowMicroseconds: 60_000_000, maxSeries: 100)
        #expect(w.add(Self.batch(1), at: 0, epoch: 1).isEmpty)
        let closed = w.add(Self.batch(1), at: 5_000_000, epoch: 2)
        #expect(closed.count == 1 && closed[0].epoch == 1 && closed[0].endMicroseconds == 5_000_000)
        #expect(w.finish().first?.epoch == 2)
    }

    /// A batch that arrives late (the producer was starved) and brings a new key epoch closes the old
    /// window at its length, not at the late batch's time.
    @Test func aLateBatchWithANewEpochDoesNotStretchTheWindow() {
        var w = WindowedAggregation(windowMicroseconds: 1_000_000, maxSeries: 100)
        #expect(w.add(Self.batch(1), at: 0, epoch: 1).isEmpty)
        let closed = w.add(Self.batch(1), at: 8_900_000, epoch: 2)
        #expect(closed.count == 1 && closed[0].endMicroseconds == 1_000_000 && closed[0].epoch == 1, "\(closed.map { ($0.startMicroseconds, $0.endMicroseconds) })")
        #expect(w.finish().first?.epoch == 2)
    }

    @Test func aFullPathDropsAndCountsInsteadOfBlocking() async {
        let path = SamplePath(capacity: 4)
        let time = SampleTime(wallMilliseconds: 0, monotonicNanoseconds: 0)
        for i in 0..<10 { path.push(TimedBatch(time: time, epoch: KeyEpoch(id: 1), batch: Self.batch(Double(i)))) }
        #expect(path.takeDropped() == 6)
        #expect(path.takeDropped() == 0, "the count is handed over once")
        path.finish()
        var received: [Double] = []
        for await b in path.batches { received.append(b.batch.samples[0].value) }
        #expect(received == [0, 1, 2, 3], "the oldest batches are kept, in order")
    }

    /// Windows dated from the monotonic clock meet exactly even when the wall-clock offset jitters by a
    /// millisecond; a real step is kept.
    @Test func datedWindowsMeetExactlyDespiteMillisecondJitter() {
        var dating = WindowDating(anchor: WallClockAnchor(floorMilliseconds: 0), maxPending: 10)
        func window(_ startS: Int64) -> WindowedAggregation.Window {
            .init(epoch: 1, startMicroseconds: startS * 1_000_000, endMicroseconds: (startS + 10) * 1_000_000, series: [], droppedSeries: 0)
        }
        var dated: [WindowDating.Dated] = []
        for (i, jitterMs) in [0, 1, 0, -1, 1].enumerated() {
            _ = dating.anchor.observe(SampleTime(wallMilliseconds: 1_800_000_000_000 + Int64(i) * 10_000 + Int64(jitterMs),
                                                 monotonicNanoseconds: UInt64(i) * 10_000_000_000))
            dated += dating.finished(window(Int64(i) * 10)).ready
        }
        for (a, b) in zip(dated, dated.dropFirst()) { #expect(b.startMs == a.endMs, "\(a.endMs) then \(b.startMs)") }
        _ = dating.anchor.observe(SampleTime(wallMilliseconds: 1_800_000_000_000 + 50_000 - 120_000, monotonicNanoseconds: 50_000_000_000))
        let stepped = dating.finished(window(50)).ready
        let gap = stepped.first!.startMs - dated.last!.endMs
        #expect(abs(gap + 120_000) <= 5, "a step of two minutes is not snapped away: \(gap)")
    }
}
