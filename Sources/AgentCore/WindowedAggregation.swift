import Aggregation
import TelemetryModel

/// Report windows driven by the samples' own timestamps: the same type closes windows for the live agent
/// (sample times from the clock) and for `analyze` (packet times from the file). Pure: no clock, no I/O.
///
/// A window is `[start, start + length)`; the first sample opens it. A sample at or past the end closes
/// it (and any empty windows in between are skipped, not emitted), then opens the window it falls in,
/// aligned to the first window's start.
public struct WindowedAggregation: Sendable {
    public struct Window: Sendable {
        public var epoch: UInt32?
        public var startMicroseconds: Int64
        public var endMicroseconds: Int64
        public var series: [Series]
        public var droppedSeries: Int
        /// The troubleshooting session the window was sampled for (see ``WindowedAggregation/session``).
        public var session: Int64? = nil
    }

    /// Stamped on every window this aggregation closes: the pipeline starts a new aggregation when the
    /// profile changes, so a window never mixes a session's samples with normal ones.
    public var session: Int64?

    public let windowMicroseconds: Int64
    private var aggregator: WindowAggregator
    private var origin: Int64?
    private var start: Int64 = 0
    private var lastSample: Int64 = 0
    /// The key epoch of the open window's pseudonyms: a batch of another epoch closes it early, so one
    /// report never mixes pseudonyms of two epochs.
    public private(set) var epoch: UInt32?

    public init(windowMicroseconds: Int64, maxSeries: Int) {
        precondition(windowMicroseconds > 0)
        self.windowMicroseconds = windowMicroseconds
        aggregator = WindowAggregator(maxSeries: maxSeries)
    }

    /// Adds a batch taken at `t` (microseconds); returns the windows that `t` closed. A sample older than
    /// the open window (a clock step backwards) is folded into the open window rather than reopening the past.
    public mutating func add(_ batch: SampleBatch, at t: Int64, epoch batchEpoch: UInt32? = nil) -> [Window] {
        var closed: [Window] = []
        if origin == nil {
            origin = t
            start = t
            epoch = batchEpoch
        } else {
            // Time first: a window never runs past its length, even when the batch that ends it also
            // changes the key epoch (a late batch after a pause would otherwise stretch it to `t`).
            if t >= start + windowMicroseconds {
                if !aggregator.isEmpty { closed.append(close(end: start + windowMicroseconds)) }
                start += (t - start) / windowMicroseconds * windowMicroseconds
            }
            if let batchEpoch, let epoch, batchEpoch != epoch {
                if t > start {
                    if !aggregator.isEmpty { closed.append(close(end: t)) }
                    start = t
                    origin = t
                }
                self.epoch = batchEpoch
            } else if let batchEpoch {
                epoch = batchEpoch
            }
        }
        lastSample = max(lastSample, t)
        for s in batch.samples { aggregator.add(s.descriptor, labels: s.labels, value: s.value) }
        for r in batch.runs { aggregator.add(r.descriptor, labels: r.labels, values: r.values) }
        return closed
    }

    /// Closes the open window at the last sample's time (a partial window), if it holds anything.
    public mutating func finish() -> [Window] {
        guard origin != nil, !aggregator.isEmpty else { return [] }
        return [close(end: max(lastSample, start + 1))]
    }

    private mutating func close(end: Int64) -> Window {
        let (series, dropped) = aggregator.drain()
        return Window(epoch: epoch, startMicroseconds: start, endMicroseconds: end, series: series, droppedSeries: dropped, session: session)
    }
}
