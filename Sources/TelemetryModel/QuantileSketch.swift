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

    /// α, the relative accuracy.
    public private(set) var relativeAccuracy: Double
    public private(set) var zeroCount: UInt64
    /// Bucket index → count of positive values, sorted by index on the wire.
    public private(set) var buckets: [Int32: UInt64]
    /// Bucket index of |x| → count of negative values x (schema 2; absent on the wire when empty).
    public private(set) var negativeBuckets: [Int32: UInt64]
    /// log γ, the divisor in every ``add(_:)``, computed once per sketch: it was a second `log` call per
    /// value, a tenth of `analyze` on a file of many RTT samples. The same division, so the same buckets.
    private var logGamma: Double

    public init(relativeAccuracy: Double = QuantileSketch.defaultRelativeAccuracy) {
        precondition(relativeAccuracy > 0 && relativeAccuracy < 1, "relative accuracy must be in (0, 1)")
        self.relativeAccuracy = relativeAccuracy
        self.logGamma = Self.logGamma(relativeAccuracy)
        self.zeroCount = 0
        self.buckets = [:]
        self.negativeBuckets = [:]
    }

    /// A sketch from its stored parts (the collector's binary storage). The caller has checked them.
    public init(relativeAccuracy: Double, zeroCount: UInt64, buckets: [Int32: UInt64], negativeBuckets: [Int32: UInt64]) {
        self.relativeAccuracy = relativeAccuracy
        self.logGamma = Self.logGamma(relativeAccuracy)
        self.zeroCount = zeroCount
        self.buckets = buckets
        self.negativeBuckets = negativeBuckets
    }

    var gamma: Double { (1 + relativeAccuracy) / (1 - relativeAccuracy) }
    private static func logGamma(_ alpha: Double) -> Double { log((1 + alpha) / (1 - alpha)) }

    public var count: UInt64 { negativeBuckets.values.reduce(buckets.values.reduce(zeroCount, +), +) }

    /// Whether any negative value was added (such a sketch needs schema version 2 to be read).
    public var hasNegativeValues: Bool { !negativeBuckets.isEmpty }

    /// The count, or nil when the bucket counts overflow 64 bits (only a hostile payload can do that).
    public var checkedCount: UInt64? {
        var total = zeroCount
        for n in buckets.values {
            let (sum, overflow) = total.addingReportingOverflow(n)
            if overflow { return nil }
            total = sum
        }
        for n in negativeBuckets.values {
            let (sum, overflow) = total.addingReportingOverflow(n)
            if overflow { return nil }
            total = sum
        }
        return total
    }

    /// `quantile(0)` and `quantile(1)` (the lowest and the highest value the sketch represents) in one
    /// pass and without sorting: the first and the last bucket holding a value; nil when `quantile` is nil
    /// (no values, or counts that overflow).
    public var extremes: (lowest: Double, highest: Double)? {
        guard let total = checkedCount, total > 0 else { return nil }
        // Buckets holding no value are skipped, as `quantile` skips them.
        var negativeLargest: Int32?, negativeSmallest: Int32?, positiveSmallest: Int32?, positiveLargest: Int32?
        for (index, n) in negativeBuckets where n > 0 {
            if negativeLargest.map({ index > $0 }) ?? true { negativeLargest = index }
            if negativeSmallest.map({ index < $0 }) ?? true { negativeSmallest = index }
        }
        for (index, n) in buckets where n > 0 {
            if positiveSmallest.map({ index < $0 }) ?? true { positiveSmallest = index }
            if positiveLargest.map({ index > $0 }) ?? true { positiveLargest = index }
        }
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
        if value > 0 { buckets[index, default: 0] += 1 } else { negativeBuckets[index, default: 0] += 1 }
        collapseIfNeeded()
    }

    /// Adds `other`'s counts. Both sketches must share the relative accuracy.
    public mutating func merge(_ other: QuantileSketch) throws(TelemetryModelError) {
        guard other.relativeAccuracy == relativeAccuracy else {
            throw TelemetryModelError(.invalidSketch,
                                      "cannot merge sketches of relative accuracy \(other.relativeAccuracy) and \(relativeAccuracy)")
        }
        zeroCount = zeroCount.saturatingAdd(other.zeroCount)
        for (index, n) in other.buckets { buckets[index] = buckets[index, default: 0].saturatingAdd(n) }
        for (index, n) in other.negativeBuckets { negativeBuckets[index] = negativeBuckets[index, default: 0].saturatingAdd(n) }
        collapseIfNeeded()
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
        for index in negativeBuckets.keys.sorted(by: >) {
            seen += negativeBuckets[index]!
            if rank < seen { return -2 * pow(g, Double(index)) / (g + 1) }
        }
        seen += zeroCount
        if rank < seen { return 0 }
        for index in buckets.keys.sorted() {
            seen += buckets[index]!
            if rank < seen { return 2 * pow(g, Double(index)) / (g + 1) }
        }
        return nil
    }

    private mutating func collapseIfNeeded() {
        guard buckets.count + negativeBuckets.count > Self.maxBuckets else { return }
        // Collapse nearest zero first: the smallest-magnitude negative buckets, then the lowest positive.
        while buckets.count + negativeBuckets.count > Self.maxBuckets {
            if negativeBuckets.count >= 2 {
                let sorted = negativeBuckets.keys.sorted()
                let n = negativeBuckets.removeValue(forKey: sorted[0])!
                negativeBuckets[sorted[1], default: 0] += n
            } else if buckets.count >= 2 {
                let sorted = buckets.keys.sorted()
                let n = buckets.removeValue(forKey: sorted[0])!
                buckets[sorted[1], default: 0] += n
            } else {
                return
            }
        }
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
        var b: [Int32: UInt64] = [:]
        for (i, n) in zip(indices, counts) {
            guard b[i] == nil else {
                throw DecodingError.dataCorruptedError(forKey: .index, in: c, debugDescription: "sketch bucket \(i) appears twice")
            }
            b[i] = n
        }
        self.buckets = b
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
        var nb: [Int32: UInt64] = [:]
        for (i, n) in zip(negIndices, negCounts) {
            guard nb[i] == nil else {
                throw DecodingError.dataCorruptedError(forKey: .negativeIndex, in: c, debugDescription: "negative sketch bucket \(i) appears twice")
            }
            nb[i] = n
        }
        self.negativeBuckets = nb
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(relativeAccuracy, forKey: .alpha)
        try c.encode(zeroCount, forKey: .zero)
        let sorted = buckets.keys.sorted()
        try c.encode(sorted, forKey: .index)
        try c.encode(sorted.map { buckets[$0]! }, forKey: .count)
        if !negativeBuckets.isEmpty {
            let negSorted = negativeBuckets.keys.sorted()
            try c.encode(negSorted, forKey: .negativeIndex)
            try c.encode(negSorted.map { negativeBuckets[$0]! }, forKey: .negativeCount)
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
