import TelemetryModel

/// A metric name plus its label set: one series.
public struct SeriesKey: Hashable, Sendable {
    public let metric: String
    public let labels: [String: String]
    public init(metric: String, labels: [String: String]) {
        self.metric = metric
        self.labels = labels
    }
}

/// Folds samples into per-series summaries for one report window. Pure: no clock, no I/O.
///
/// Bounded: at most `maxSeries` distinct series per window; samples for further series are dropped and
/// each such series counted once in ``droppedSeries`` (shipped as `agent.dropped_series`).
public struct WindowAggregator: Sendable {
    struct Accumulator: Sendable {
        var unit: String
        var count = 0
        var min = Double.infinity
        var max = -Double.infinity
        var sum = 0.0
        var last = 0.0
        var sketch: QuantileSketch?
    }

    public let maxSeries: Int
    private var accumulators: [SeriesKey: Accumulator] = [:]
    private var order: [SeriesKey] = []
    public private(set) var droppedSeries = 0
    /// The hashes of the series refused this window, so that a series counts once however many samples
    /// it brings. At most `maxSeries` of them (a full window's memory stays within its table's); past
    /// that, each refused sample of a series not among them counts, which can only overstate.
    private var refused: Set<Int> = []

    public init(maxSeries: Int) {
        precondition(maxSeries > 0)
        self.maxSeries = maxSeries
    }

    public var isEmpty: Bool { accumulators.isEmpty }
    public var seriesCount: Int { accumulators.count }

    /// Adds one sample of a catalogued metric. Non-finite values are ignored (the sampler reports them as
    /// unknown instead).
    public mutating func add(_ descriptor: MetricDescriptor, labels: [String: String], value: Double) {
        guard value.isFinite else { return }
        guard let i = accumulatorIndex(descriptor, labels: labels) else { return }
        accumulators.values[i].fold(value)
    }

    /// The series' accumulator, created when new; nil (counted) when the window already holds
    /// `maxSeries` series. The key is hashed once for a known series (a label set hashes every string).
    private mutating func accumulatorIndex(_ descriptor: MetricDescriptor, labels: [String: String]) -> Dictionary<SeriesKey, Accumulator>.Index? {
        let key = SeriesKey(metric: descriptor.name, labels: labels)
        if let i = accumulators.index(forKey: key) { return i }
        guard accumulators.count < maxSeries else {
            let hash = key.hashValue
            if refused.count < maxSeries ? refused.insert(hash).inserted : !refused.contains(hash) { droppedSeries += 1 }
            return nil
        }
        accumulators[key] = Accumulator(unit: descriptor.unit, sketch: descriptor.kind.isSketched ? QuantileSketch() : nil)
        order.append(key)
        return accumulators.index(forKey: key)
    }

    /// Folds several samples of one series in order: the key is hashed once (an interval's RTT samples
    /// are thousands of one series).
    public mutating func add(_ descriptor: MetricDescriptor, labels: [String: String], values: [Double]) {
        guard !values.isEmpty else { return }
        guard let i = accumulatorIndex(descriptor, labels: labels) else { return }
        // Folded into a local copy and put back: the dictionary's slot gives up its sketch first, so the
        // copy's buckets are not copied on the first write, and each value skips the slot's access path.
        var accumulator = accumulators.values[i]
        accumulators.values[i].sketch = nil
        for v in values where v.isFinite { accumulator.foldStatistics(v) }
        accumulator.sketch?.add(contentsOf: values)
        accumulators.values[i] = accumulator
    }

    /// The window's series in first-seen order, and a fresh, empty aggregator state.
    public mutating func drain() -> (series: [Series], droppedSeries: Int) {
        let series = order.compactMap { key -> Series? in
            guard let a = accumulators[key], a.count > 0 else { return nil }
            return Series(metric: key.metric, unit: a.unit, labels: key.labels, count: a.count, min: a.min, max: a.max,
                          mean: a.sum / Double(a.count), last: a.last, sum: a.sum, sketch: a.sketch)
        }
        let dropped = droppedSeries
        accumulators = [:]
        order = []
        droppedSeries = 0
        refused = []
        return (series, dropped)
    }
}

extension WindowAggregator.Accumulator {
    mutating func fold(_ value: Double) {
        foldStatistics(value)
        sketch?.add(value)
    }

    /// Everything but the sketch (which takes a batch at once: ``QuantileSketch/add(contentsOf:)``).
    mutating func foldStatistics(_ value: Double) {
        count += 1
        min = Swift.min(min, value)
        max = Swift.max(max, value)
        sum += value
        last = value
    }
}
