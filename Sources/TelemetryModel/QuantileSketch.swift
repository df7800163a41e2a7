#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A mergeable quantile sketch with a guaranteed relative error (DDSketch, Masson et al., VLDB 2019).
///
/// A positive value `x` falls in bucket `ceil(log_γ x)` with `γ = (1 + α) / (1 - α)`; every value in a
/// bucket is within `α` (relative) of the bucket's representative `2γ^i / (γ + 1)`. A negative value `x`
/// falls in bucket `ceil(log_γ |x|)` of a second store (``negativeBuckets``), so signal levels in dBm keep
/// the same guarantee; values within ``minimumPositive`` of zero go to ``zeroCount``. Two sketches with the
/// same `α` merge by adding bucket counts, so windows roll up into hours without losing the guarantee.
/// The bucket count (both stores) is bounded by ``maxBuckets``: past it the buckets nearest zero collapse
/// into one, which keeps the guarantee for the upper quantiles of positive data (p50 and above) that the
/// NOC reads. Sparse on the wire: only non-empty buckets are shipped, and a sketch without negatives
/// encodes exactly as schema version 1 did.
public struct QuantileSketch: Codable, Sendable, Equatable {
    public static let defaultRelativeAccuracy = 0.01
    public static let maxBuckets = 2048
    public static let minimumPositive = 1e-9

    /// One bucket of a store: its index and how many values fell in it.
    public struct Bucket: Sendable, Equatable {
        public var index: Int32
        public var count: UInt64
        public init(index: Int32, count: UInt64) {
            self.index = index
            self.count = count
        }
    }

    /// α, the relative accuracy.
    public private(set) var relativeAccuracy: Double
    public private(set) var zeroCount: UInt64
    /// The positive values' buckets in ascending index order, each index once. Sorted arrays, not a
    /// dictionary: the collector decodes, merges and encodes sketches far more often than values are
    /// added, and those are then linear passes without a hash per bucket (they were a tenth of its CPU).
    public private(set) var positiveStore: [Bucket]
    /// The buckets of |x| for negative values x, the same way (schema 2; absent on the wire when empty).
    public private(set) var negativeStore: [Bucket]
    /// log γ, the divisor in every ``add(_:)``, computed once per sketch: it was a second `log` call per
    /// value, a tenth of `analyze` on a file of many RTT samples. The same division, so the same buckets.
    private var logGamma: Double

    public init(relativeAccuracy: Double = QuantileSketch.defaultRelativeAccuracy) {
        precondition(relativeAccuracy > 0 && relativeAccuracy < 1, "relative accuracy must be in (0, 1)")
        self.relativeAccuracy = relativeAccuracy
        self.logGamma = Self.logGamma(relativeAccuracy)
        self.zeroCount = 0
        self.positiveStore = []
        self.negativeStore = []
    }

    /// A sketch from its parts, given as index → count (tests, and readers that have a dictionary).
    public init(relativeAccuracy: Double, zeroCount: UInt64, buckets: [Int32: UInt64], negativeBuckets: [Int32: UInt64]) {
        self.init(relativeAccuracy: relativeAccuracy, zeroCount: zeroCount,
                  ascending: buckets.sorted { $0.key < $1.key }.map { Bucket(index: $0.key, count: $0.value) },
                  ascendingNegative: negativeBuckets.sorted { $0.key < $1.key }.map { Bucket(index: $0.key, count: $0.value) })
    }

    /// A sketch from its stored parts (the collector's binary storage and batch reader), each store in
    /// strictly ascending index order: the caller has checked that, and the relative accuracy.
    public init(relativeAccuracy: Double, zeroCount: UInt64, ascending: [Bucket], ascendingNegative: [Bucket]) {
        precondition(Self.isStrictlyAscending(ascending) && Self.isStrictlyAscending(ascendingNegative), "sketch buckets out of order")
        self.relativeAccuracy = relativeAccuracy
        self.logGamma = Self.logGamma(relativeAccuracy)
        self.zeroCount = zeroCount
        self.positiveStore = ascending
        self.negativeStore = ascendingNegative
    }

    /// Whether every index is above the one before it (each index once).
    public static func isStrictlyAscending(_ store: [Bucket]) -> Bool {
        var previous: Int32?
        for b in store {
            if let p = previous, b.index <= p { return false }
            previous = b.index
        }
        return true
    }

    /// Bucket index → count of positive values.
    public var buckets: [Int32: UInt64] { Dictionary(uniqueKeysWithValues: positiveStore.map { ($0.index, $0.count) }) }
    /// Bucket index of |x| → count of negative values x.
    public var negativeBuckets: [Int32: UInt64] { Dictionary(uniqueKeysWithValues: negativeStore.map { ($0.index, $0.count) }) }

    var gamma: Double { (1 + relativeAccuracy) / (1 - relativeAccuracy) }
    private static func logGamma(_ alpha: Double) -> Double { log((1 + alpha) / (1 - alpha)) }

    public var count: UInt64 { negativeStore.reduce(positiveStore.reduce(zeroCount) { $0 + $1.count }) { $0 + $1.count } }

    /// Whether any negative value was added (such a sketch needs schema version 2 to be read).
    public var hasNegativeValues: Bool { !negativeStore.isEmpty }

    /// The count, or nil when the bucket counts overflow 64 bits (only a hostile payload can do that).
    public var checkedCount: UInt64? {
        var total = zeroCount
        for b in positiveStore {
            let (sum, overflow) = total.addingReportingOverflow(b.count)
            if overflow { return nil }
            total = sum
        }
        for b in negativeStore {
            let (sum, overflow) = total.addingReportingOverflow(b.count)
            if overflow { return nil }
            total = sum
        }
        return total
    }

    /// `quantile(0)` and `quantile(1)` (the lowest and the highest value the sketch represents) in one
    /// pass: the first and the last bucket holding a value; nil when `quantile` is nil (no values, or
    /// counts that overflow).
    public var extremes: (lowest: Double, highest: Double)? {
        guard let total = checkedCount, total > 0 else { return nil }
        // Buckets holding no value are skipped, as `quantile` skips them.
        let negativeSmallest = negativeStore.first { $0.count > 0 }?.index, negativeLargest = negativeStore.last { $0.count > 0 }?.index
        let positiveSmallest = positiveStore.first { $0.count > 0 }?.index, positiveLargest = positiveStore.last { $0.count > 0 }?.index
        let g = gamma
        func negative(_ index: Int32) -> Double { -2 * pow(g, Double(index)) / (g + 1) }
        func positive(_ index: Int32) -> Double { 2 * pow(g, Double(index)) / (g + 1) }
        let lowest = negativeLargest.map(negative) ?? (zeroCount > 0 ? 0 : positive(positiveSmallest!))
        let highest = positiveLargest.map(positive) ?? (zeroCount > 0 ? 0 : negative(negativeSmallest!))
        return (lowest, highest)
    }

    public mutating func add(_ value: Double) {
        guard value.isFinite else { return }
        if Swift.abs(value) <= Self.minimumPositive {
            zeroCount += 1
            return
        }
        let index = Int32((log(Swift.abs(value)) / logGamma).rounded(.up))
        if value > 0 { Self.increment(&positiveStore, at: index) } else { Self.increment(&negativeStore, at: index) }
        collapseIfNeeded()
    }

    /// Adds `values` in one pass: the same sketch as ``add(_:)`` for each in turn. Positive values are
    /// counted in a dense array over the batch's index range and merged into the store once, where a
    /// binary search per value over an interval's few hundred RTT buckets was a twentieth of `analyze`'s
    /// CPU on input B (docs/benchmarks.md, "Start-up"). Collapsing once at the end keeps what collapsing
    /// after each value keeps (the buckets nearest zero fold first, negative ones before positive ones),
    /// and a batch that adds no bucket collapses nothing, as no `add` would. A batch whose positive indices
    /// span more than ``denseSpanLimit`` buckets goes value by value.
    public mutating func add(contentsOf values: [Double]) {
        var indices: [Int32] = []
        indices.reserveCapacity(values.count)
        var low = Int32.max, high = Int32.min
        var touched = false
        for value in values where value.isFinite {
            let magnitude = Swift.abs(value)
            if magnitude <= Self.minimumPositive {
                zeroCount += 1
                continue
            }
            let index = Int32((log(magnitude) / logGamma).rounded(.up))
            if value > 0 {
                indices.append(index)
                low = Swift.min(low, index)
                high = Swift.max(high, index)
            } else {
                Self.increment(&negativeStore, at: index)
                touched = true
            }
        }
        if !indices.isEmpty {
            touched = true
            let span = Int(high) - Int(low) + 1
            if span <= Self.denseSpanLimit {
                var counts = [UInt64](repeating: 0, count: span)
                for index in indices { counts[Int(index - low)] &+= 1 }  // at most values.count: no overflow
                var batch: [Bucket] = []
                for (offset, count) in counts.enumerated() where count > 0 {
                    batch.append(Bucket(index: low + Int32(offset), count: count))
                }
                Self.merge(&positiveStore, batch)
            } else {
                for index in indices { Self.increment(&positiveStore, at: index) }
            }
        }
        if touched { collapseIfNeeded() }
    }

    /// The widest index range ``add(contentsOf:)`` counts in a dense array (64 KB of counters; at a
    /// relative accuracy of 1 %, 1 ns to 3·10⁸ s is about 2,000 buckets).
    static let denseSpanLimit = 8192

    /// Adds one value to bucket `index` of `store`, inserting the bucket in order when new.
    private static func increment(_ store: inout [Bucket], at index: Int32) {
        // Values arrive in runs of similar magnitude: the last bucket is checked before searching.
        if let last = store.last?.index {
            if last == index { store[store.count - 1].count = store[store.count - 1].count.saturatingAdd(1); return }
            if last < index { store.append(Bucket(index: index, count: 1)); return }
        }
        var low = 0, high = store.count
        while low < high {
            let mid = (low + high) / 2
            if store[mid].index < index { low = mid + 1 } else { high = mid }
        }
        if low < store.count, store[low].index == index { store[low].count = store[low].count.saturatingAdd(1) } else { store.insert(Bucket(index: index, count: 1), at: low) }
    }

    /// Adds `other`'s counts. Both sketches must share the relative accuracy.
    public mutating func merge(_ other: QuantileSketch) throws(TelemetryModelError) {
        guard other.relativeAccuracy == relativeAccuracy else {
            throw TelemetryModelError(.invalidSketch,
                                      "cannot merge sketches of relative accuracy \(other.relativeAccuracy) and \(relativeAccuracy)")
        }
        zeroCount = zeroCount.saturatingAdd(other.zeroCount)
        Self.merge(&positiveStore, other.positiveStore)
        Self.merge(&negativeStore, other.negativeStore)
        collapseIfNeeded()
    }

    /// `store` plus `other`, both ascending: one pass over the two (counts held at UInt64.max).
    private static func merge(_ store: inout [Bucket], _ other: [Bucket]) {
        guard !other.isEmpty else { return }
        guard !store.isEmpty else { store = other; return }
        var out: [Bucket] = []
        out.reserveCapacity(store.count + other.count)
        var i = 0, j = 0
        while i < store.count || j < other.count {
            if j == other.count || (i < store.count && store[i].index < other[j].index) {
                out.append(store[i]); i += 1
            } else if i == store.count || other[j].index < store[i].index {
                out.append(other[j]); j += 1
            } else {
                out.append(Bucket(index: store[i].index, count: store[i].count.saturatingAdd(other[j].count))); i += 1; j += 1
            }
        }
        store = out
    }

    /// The estimated value at quantile `q` in [0, 1] by nearest rank (the smallest value with at least
    /// q·n values at or below it), or nil for an empty sketch.
    public func quantile(_ q: Double) -> Double? {
        guard let total = checkedCount, total > 0, q >= 0, q <= 1 else { return nil }
        // The rank, clamped in Double before it becomes an integer: q × total can round past UInt64.max.
        let exact = Swift.max(0, (q * Double(total)).rounded(.up) - 1)
        let rank = q == 1 || exact >= Double(total - 1) ? total - 1 : UInt64(exact)
        let g = gamma
        var seen: UInt64 = 0
        // Most negative first: the largest |x| bucket of the negative store holds the smallest values.
        for b in negativeStore.reversed() {
            seen += b.count
            if rank < seen { return -2 * pow(g, Double(b.index)) / (g + 1) }
        }
        seen += zeroCount
        if rank < seen { return 0 }
        for b in positiveStore {
            seen += b.count
            if rank < seen { return 2 * pow(g, Double(b.index)) / (g + 1) }
        }
        return nil
    }

    private mutating func collapseIfNeeded() {
        guard positiveStore.count + negativeStore.count > Self.maxBuckets else { return }
        // Collapse nearest zero first: the smallest-magnitude negative buckets, then the lowest positive.
        var negativeDrop = 0, positiveDrop = 0
        while positiveStore.count - positiveDrop + negativeStore.count - negativeDrop > Self.maxBuckets {
            if negativeStore.count - negativeDrop >= 2 {
                negativeStore[negativeDrop + 1].count = negativeStore[negativeDrop + 1].count.saturatingAdd(negativeStore[negativeDrop].count)
                negativeDrop += 1
            } else if positiveStore.count - positiveDrop >= 2 {
                positiveStore[positiveDrop + 1].count = positiveStore[positiveDrop + 1].count.saturatingAdd(positiveStore[positiveDrop].count)
                positiveDrop += 1
            } else {
                break
            }
        }
        negativeStore.removeFirst(negativeDrop)
        positiveStore.removeFirst(positiveDrop)
    }

    // Wire form: {"alpha":0.01,"zero":0,"index":[...],"count":[...]}, indices ascending; schema 2 adds
    // "neg_index"/"neg_count" (same form, indices of |x|) only when there are negative values.
    enum CodingKeys: String, CodingKey {
        case alpha, zero, index, count
        case negativeIndex = "neg_index"
        case negativeCount = "neg_count"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let alpha = try c.decode(Double.self, forKey: .alpha)
        guard alpha.isFinite, alpha >= 0.0001, alpha < 0.5 else {
            throw DecodingError.dataCorruptedError(forKey: .alpha, in: c,
                                                   debugDescription: "sketch alpha must be in [0.0001, 0.5), got \(alpha)")
        }
        let indices = try c.decode([Int32].self, forKey: .index)
        let counts = try c.decode([UInt64].self, forKey: .count)
        guard indices.count == counts.count else {
            throw DecodingError.dataCorruptedError(forKey: .count, in: c,
                                                   debugDescription: "sketch has \(indices.count) indices but \(counts.count) counts")
        }
        guard indices.count <= Self.maxBuckets else {
            throw DecodingError.dataCorruptedError(forKey: .index, in: c,
                                                   debugDescription: "sketch has \(indices.count) buckets, at most \(Self.maxBuckets) allowed")
        }
        self.relativeAccuracy = alpha
        self.logGamma = Self.logGamma(alpha)
        self.zeroCount = try c.decode(UInt64.self, forKey: .zero)
        guard let positive = Self.ascendingStore(indices, counts) else {
            throw DecodingError.dataCorruptedError(forKey: .index, in: c, debugDescription: "sketch bucket \(Self.repeated(indices)) appears twice")
        }
        self.positiveStore = positive
        let negIndices = try c.decodeIfPresent([Int32].self, forKey: .negativeIndex) ?? []
        let negCounts = try c.decodeIfPresent([UInt64].self, forKey: .negativeCount) ?? []
        guard negIndices.count == negCounts.count else {
            throw DecodingError.dataCorruptedError(forKey: .negativeCount, in: c,
                                                   debugDescription: "sketch has \(negIndices.count) negative indices but \(negCounts.count) counts")
        }
        guard indices.count + negIndices.count <= Self.maxBuckets else {
            throw DecodingError.dataCorruptedError(forKey: .negativeIndex, in: c,
                                                   debugDescription: "sketch has \(indices.count + negIndices.count) buckets, at most \(Self.maxBuckets) allowed")
        }
        guard let negative = Self.ascendingStore(negIndices, negCounts) else {
            throw DecodingError.dataCorruptedError(forKey: .negativeIndex, in: c, debugDescription: "negative sketch bucket \(Self.repeated(negIndices)) appears twice")
        }
        self.negativeStore = negative
    }

    /// A store from the wire's parallel arrays (ascending as written, sorted here if not); nil when an
    /// index appears twice. The arrays have the same length (the caller checked).
    public static func ascendingStore(_ indices: [Int32], _ counts: [UInt64]) -> [Bucket]? {
        var store = zip(indices, counts).map { Bucket(index: $0, count: $1) }
        if !isStrictlyAscending(store) { store.sort { $0.index < $1.index } }
        return isStrictlyAscending(store) ? store : nil
    }

    /// The first index that appears twice in `indices` (for the error message).
    private static func repeated(_ indices: [Int32]) -> Int32 {
        var seen = Set<Int32>()
        for i in indices where !seen.insert(i).inserted { return i }
        return 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(relativeAccuracy, forKey: .alpha)
        try c.encode(zeroCount, forKey: .zero)
        try c.encode(positiveStore.map(\.index), forKey: .index)
        try c.encode(positiveStore.map(\.count), forKey: .count)
        if !negativeStore.isEmpty {
            try c.encode(negativeStore.map(\.index), forKey: .negativeIndex)
            try c.encode(negativeStore.map(\.count), forKey: .negativeCount)
        }
    }
}

extension FixedWidthInteger {
    /// `self + other`, held at the type's bounds instead of trapping.
    @inlinable public func saturatingAdd(_ other: Self) -> Self {
        let (r, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : r
    }
}
